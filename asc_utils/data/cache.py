"""A cached in-memory form of a split: all clips in one memory-mapped .npy, built once with a progress bar.

The cache file is keyed by a hash of the split's file list (plus meta.csv's size and modification time, so a
regenerated data set with the same names is not served stale). It lives in <data dir>/.cache when that folder is
writable, else in asc_utils.paths.cache_dir(). A new key replaces the old cache file of the same split.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from asc_utils.audio import CLIP_SAMPLES
from asc_utils.data.tau import load_clip, load_split, split_name
from asc_utils.labels import DEVICES

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

    def take(self, rows: Sequence[int] | np.ndarray) -> SplitArrays:
        """The clips at the given positions, in that order (waves copied into memory)."""
        rows = np.asarray(rows, dtype=np.int64)
        return SplitArrays(
            waves=np.asarray(self.waves[rows]),
            labels=self.labels[rows],
            devices=[self.devices[i] for i in rows],
            cities=[self.cities[i] for i in rows],
            filenames=[self.filenames[i] for i in rows],
        )

    def subset_rows(self, per_device: int | Mapping[str, int] | None, seed: int = 0) -> np.ndarray:
        """The positions (sorted) that `subset(per_device, seed)` keeps; see there."""
        if per_device is None:
            return np.arange(len(self))
        devices, seen = np.asarray(self.devices), set(self.devices)
        present = [d for d in DEVICES if d in seen] + sorted(seen - set(DEVICES))
        if isinstance(per_device, Mapping):
            quotas = {d: per_device.get(d, 0) for d in present}
        else:
            quotas = dict.fromkeys(present, per_device)
        bad = {d: q for d, q in quotas.items() if isinstance(q, bool) or not isinstance(q, (int, np.integer)) or q < 0}
        if bad:
            raise ValueError(f"subset: per_device must be a count >= 0 (or a dict of them by device); got {bad}.")
        rows: list[np.ndarray] = []
        for device, quota in quotas.items():
            if quota:
                rows.append(_balanced_order(np.flatnonzero(devices == device), self.labels, seed, device)[:quota])
        return np.sort(np.concatenate(rows)) if rows else np.zeros(0, dtype=np.int64)

    def subset(self, per_device: int | Mapping[str, int] | None, seed: int = 0) -> SplitArrays:
        """A seeded subset with at most `per_device` clips of every device, as evenly spread over the classes as possible.

        per_device: an int (the same cap for every device), a dict {device: cap} (devices it does not name are left out),
        or None (every clip: returns this object itself). A device with fewer clips than its cap keeps all of them.
        Within one device the clips of each class are shuffled and then taken in rounds, one clip per class per round,
        the classes of each round in a shuffled order: every class gets min(its clips, t) or one more, so class counts
        differ by at most one unless a class runs out. The draw of a device depends only on seed, the device name and
        that device's clips (not on the other devices or caps), and a smaller cap keeps a subset of a larger one's clips.
        The same seed always gives the same clips; the kept clips stay in split order (waves are copied into memory).
        """
        if per_device is None:
            return self
        return self.take(self.subset_rows(per_device, seed))


def _balanced_order(rows: np.ndarray, labels: np.ndarray, seed: int, device: str) -> np.ndarray:
    """One device's rows in class-balanced round-robin order (shuffled within classes and within each round)."""
    rng = np.random.default_rng([seed, zlib.crc32(device.encode("utf-8"))])
    classes = np.unique(labels[rows])
    queues = [rng.permutation(rows[labels[rows] == k]) for k in classes]
    order = []
    for depth in range(max((len(q) for q in queues), default=0)):
        for k in rng.permutation(len(queues)):
            if depth < len(queues[k]):
                order.append(queues[k][depth])
    return np.asarray(order, dtype=np.int64)


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
    name = split_name(split)
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
