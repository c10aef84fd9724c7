"""The TAU22 data layer: meta and split files, clips, a torch Dataset, a cached array form, and the embedded data set.

    from asc_utils.data import load_meta, load_split, TAUDataset, load_split_arrays
    from asc_utils.data.synthetic import synthesize

Names are imported on first use, so generating data (`asc data synth`) does not pay for importing torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "DataError": "tau",
    "load_meta": "tau",
    "load_split": "tau",
    "load_clip": "tau",
    "ensure_split_files": "tau",
    "is_embedded": "tau",
    "parse_filename": "tau",
    "SPLIT_NAMES": "tau",
    "TAUDataset": "dataset",
    "SplitArrays": "cache",
    "load_split_arrays": "cache",
    "synthesize": "synthetic",
    "PRESETS": "synthetic",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"asc_utils.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'asc_utils.data' has no attribute '{name}'")


def __dir__() -> list[str]:
    return __all__
