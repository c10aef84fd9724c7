"""A cached in-memory form of a split: all clips in one memory-mapped .npy, built once with a progress bar.

The cache file is keyed by a hash of the split's file list and of the size and modification time of meta.csv and of
every listed wav file, so a regenerated data set or a single replaced clip is never served stale. It lives in
<data dir>/.cache when that folder is writable, else in a folder of its own per data folder under
asc_utils.paths.cache_dir(). A new key replaces the old cache file of the same split. Writes are atomic: the array is
filled under a hidden temporary name (`.<split>-<key>.<host>-<pid>.npy`) and renamed when complete; temporaries left by a
writer that was killed are removed by the next load.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
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


_CACHE_NAME = re.compile(r"^(?P<split>split(?:5|10|25|50|100)|test)-[0-9a-f]{16}\.npy$")
# temporaries: `.<split>-<key>.<host>-<pid>.npy`, and `.<split>-<key>.<pid>.npy` as earlier versions named them
_TEMP_NAME = re.compile(r"^\.(?:split(?:5|10|25|50|100)|test)-[0-9a-f]{16}\.(?:(?P<host>[A-Za-z0-9]*)-)?(?P<pid>\d+)\.npy$")


def _host() -> str:
    """This machine's name as it appears in temporary file names (letters and digits only)."""
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())


def _cache_folder(data_dir: Path) -> Path:
    local = data_dir / ".cache"
    if local.exists() and os.access(local, os.W_OK) or not local.exists() and os.access(data_dir, os.W_OK):
        return local
    from asc_utils.paths import cache_dir

    # one folder per data folder: replacing a stale cache must never remove another data folder's arrays
    tag = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]
    return cache_dir() / "splits" / f"{data_dir.resolve().name}-{tag}"


def _process_alive(pid: int) -> bool:
    """True when a process with this id runs on this machine (or may: it exists but belongs to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:  # e.g. an id out of range
        return False
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the cache temporaries in folder whose writer process is gone (killed mid-write); return what was deleted.

    Only hidden files of this module's temporary naming pattern are considered; those of the current process, of a live
    process, or written on another machine (a shared folder) are kept.
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    me, host = os.getpid(), _host()
    for entry in os.scandir(folder):
        match = _TEMP_NAME.match(entry.name)
        if not match or not entry.is_file(follow_symlinks=False):
            continue
        pid = int(match["pid"])
        if pid == me or match["host"] not in (None, host) or _process_alive(pid):
            continue
        Path(entry.path).unlink(missing_ok=True)
        removed.append(Path(entry.path))
    return removed


def _file_stamp(path: Path) -> str:
    """Size and modification time of one file ('missing' when it is not there)."""
    try:
        stat = path.stat()
    except OSError:
        return "missing"
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def cache_key(data_dir: str | os.PathLike, filenames: list[str], dtype: np.dtype) -> str:
    """A short hash of the cache format, dtype, data folder, meta.csv's and every listed file's size and mtime, and the list."""
    data_dir = Path(data_dir).resolve()
    digest = hashlib.sha256(f"{CACHE_VERSION}|{np.dtype(dtype).str}|{data_dir}|{_file_stamp(data_dir / 'meta.csv')}\n".encode())
    for filename in filenames:
        digest.update(f"{filename}|{_file_stamp(data_dir / filename)}\n".encode())
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
    remove_stale_temporaries(folder)
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{name}-{key}.{_host()}-{os.getpid()}.npy"
        try:
            waves = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.dtype(dtype), shape=(len(filenames), CLIP_SAMPLES))
            for i, filename in enumerate(tqdm(filenames, desc=f"caching {name}", unit="clip", disable=not progress)):
                waves[i] = load_clip(data_dir / filename)
            waves.flush()
            del waves
            with open(tmp, "rb+") as handle:  # on disk before the rename makes it visible
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        for entry in os.scandir(folder):  # the files changed: drop the stale cache of this split (only our own names)
            match = _CACHE_NAME.match(entry.name)
            if match and match["split"] == name and entry.name != path.name:
                Path(entry.path).unlink(missing_ok=True)
    return SplitArrays(
        waves=np.load(path, mmap_mode="r"),
        labels=table["label"].to_numpy(dtype=np.int64),
        devices=table["device"].tolist(),
        cities=table["city"].tolist(),
        filenames=filenames,
    )
