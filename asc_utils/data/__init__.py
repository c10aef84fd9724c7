"""The TAU22 data layer: meta and split files, clips, the cached array form of a split, the folder checker, a torch Dataset.

    from asc_utils.data import load_meta, load_split, load_split_arrays

It reads the real TAU Urban Acoustic Scenes 2022 Mobile folder and the embedded data set alike (the generator that writes
the latter is `asc_utils.synth`; `asc_utils.data.fetch` fetches real clips from the published archives).
"""

from __future__ import annotations

from asc_utils.data.cache import SplitArrays, load_split_arrays
from asc_utils.data.check import DataCheck, check_data_dir
from asc_utils.data.dataset import TAUDataset
from asc_utils.data.tau import (
    SPLIT_NAMES,
    DataError,
    ensure_split_files,
    is_embedded,
    load_clip,
    load_meta,
    load_split,
    parse_filename,
)

__all__ = ["SPLIT_NAMES", "DataCheck", "DataError", "SplitArrays", "TAUDataset", "check_data_dir", "ensure_split_files",
           "is_embedded", "load_clip", "load_meta", "load_split", "load_split_arrays", "parse_filename"]
