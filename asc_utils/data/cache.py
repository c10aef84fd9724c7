"""A cached in-memory form of a split: all clips in one memory-mapped .npy, built once with a progress bar.

The cache file is keyed by a hash of the split's file list (plus meta.csv's size and modification time, so a
regenerated data set with the same names is not served stale). It lives in <data dir>/.cache when that folder is
writable, else in asc_utils.paths.cache_dir(). A new key replaces the old cache file of the same split.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from asc_utils.audio import CLIP_SAMPLES
from asc_utils.data.tau import _split_name, load_clip, load_split

CACHE_VERSION = 1


@dataclass
class SplitArrays:
    """One split in memory: waves [N, 44100] (memory-mapped), labels int64 [N], and per-clip devices, cities, names."""

    waves: np.ndarray
    labels: np.ndarray
    devices: list[str]
    cities: list[str]
    filenames: list[str]

    def __len__(self) -> int:
        return len(self.filenames)


def _cache_folder(data_dir: Path) -> Path:
    local = data_dir / ".cache"
    if local.exists() and os.access(local, os.W_OK) or not local.exists() and os.access(data_dir, os.W_OK):
        return local
    from asc_utils.paths import cache_dir

    return cache_dir() / "splits"


def cache_key(data_dir: str | os.PathLike, filenames: list[str], dtype: np.dtype) -> str:
    """A short hash of the file list, the data folder, meta.csv's size and mtime, the dtype and the cache format."""
    data_dir = Path(data_dir).resolve()
    stat = (data_dir / "meta.csv").stat()
    digest = hashlib.sha256(f"{CACHE_VERSION}|{np.dtype(dtype).str}|{data_dir}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    digest.update("\n".join(filenames).encode())
    return digest.hexdigest()[:16]


def load_split_arrays(data_dir: str | os.PathLike, split: str, progress: bool = True, dtype: str = "float16") -> SplitArrays:
    """Load a split as arrays, reading every wav only the first time (then memory-mapping the cached .npy)."""
    data_dir = Path(data_dir)
    table = load_split(data_dir, split)
    filenames = table["filename"].tolist()
    key = cache_key(data_dir, filenames, np.dtype(dtype))
    folder = _cache_folder(data_dir)
    name = _split_name(split)
    path = folder / f"{name}-{key}.npy"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{name}-{key}.{os.getpid()}.npy"
        try:
            waves = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.dtype(dtype), shape=(len(filenames), CLIP_SAMPLES))
            for i, filename in enumerate(tqdm(filenames, desc=f"caching {name}", unit="clip", disable=not progress)):
                waves[i] = load_clip(data_dir / filename)
            waves.flush()
            del waves
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        for old in folder.glob(f"{name}-*.npy"):  # the file list changed: drop the stale cache
            if old != path:
                old.unlink(missing_ok=True)
    return SplitArrays(
        waves=np.load(path, mmap_mode="r"),
        labels=table["label"].to_numpy(dtype=np.int64),
        devices=table["device"].tolist(),
        cities=table["city"].tolist(),
        filenames=filenames,
    )
