"""Real TAU22 clips without the 30 GB download: `fetch(dest, subset)` reads single wav files out of the Zenodo zip archives.

A zip archive ends with its central directory, the list of its members with their offsets, sizes and CRC-32s. With HTTP
range requests we read `meta.zip` (small) and the central directory of every audio archive, choose the clips of a subset,
and download only those members, neighbouring members in one request. `remotezip` turns a range-reading transport into a
`zipfile.ZipFile`, so every member is parsed and CRC-checked by the standard `zipfile` module. With `from_archives` the
same code reads local copies of the archives instead of HTTP.

The folder written has the TAU22 layout (`audio/`, `meta.csv`, `split_setup/`) restricted to the fetched clips, and a
data card (`DATA_CARD.md`, `data_card.json`) that says it is a real subset, how it was chosen, and the TAU22 licence.
"""

from __future__ import annotations

import bisect
import io
import json
import os
import shutil
import tempfile
import threading
import time
import urllib.parse
import zipfile
import zlib
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from remotezip import PartialBuffer, RemoteFetcher, RemoteZip
from tqdm.auto import tqdm

from asc_utils.data import tau
from asc_utils.errors import UserError
from asc_utils.labels import CITIES, CLASSES, DEVICES
from asc_utils.paths import shell_quote

ZENODO_RECORD = 6337421
ZENODO_URL = f"https://zenodo.org/records/{ZENODO_RECORD}/files"
RELEASE = "TAU-urban-acoustic-scenes-2022-mobile-development"
META_ARCHIVE = f"{RELEASE}.meta.zip"
AUDIO_ARCHIVE_COUNT = 16
AUDIO_ARCHIVES = tuple(f"{RELEASE}.audio.{i}.zip" for i in range(1, AUDIO_ARCHIVE_COUNT + 1))
WAV_HEADER_BYTES = 44  # RIFF + fmt (PCM) + data chunk headers of a TAU22 clip
CLIP_BYTES = WAV_HEADER_BYTES + 44_100 * 3  # 1 s, 44.1 kHz, 24-bit mono: 132,344 bytes
TAIL_BYTES = 1 << 16  # the first request for an archive reads its last 64 KiB (end record, often the directory)
MERGE_GAP = 1 << 18  # neighbouring members at most 256 KiB apart are fetched in one request (the gap is discarded)
MAX_REQUEST = 8 << 20  # but one request stays under 8 MiB
TIMEOUT = (15.0, 120.0)  # seconds: connect, read
RETRY_DELAYS = (2.0, 10.0, 30.0, 60.0, 60.0)  # waits before retrying a request answered with 429 or 5xx, or cut short
WORK = ".asc-fetch"  # the fetch's own state in the destination folder
LICENCE = (
    "TAU Urban Acoustic Scenes 2022 Mobile, development dataset: Copyright (c) 2022 Tampere University and its licensors. "
    "Use and copying are permitted for experimental and non-commercial purposes only, provided that the copyright notice "
    "appears in all copies and that the Audio Research Group at Tampere University is acknowledged in any publication "
    "that reports research using it. Full terms: the release's documentation on Zenodo, record 6337421 "
    "(https://doi.org/10.5281/zenodo.6337421)."
)


class FetchError(UserError, RuntimeError):
    """Real TAU22 clips could not be fetched; the message says why and what to do instead."""


@dataclass(frozen=True)
class Subset:
    """Which clips a subset holds: training clips drawn from split25, test clips drawn from the test split."""

    name: str
    description: str
    train_clips: int | None  # clips drawn from split25 (None: all of it, 0: none)
    test_per_cell: int | None  # test clips per class and device (None: the whole test split)


SUBSETS: dict[str, Subset] = {
    "mini": Subset("mini", "a balanced course subset: 1,800 training clips from split25 (with its proportions of devices and "
                           "classes) and 1,800 test clips (20 per class and device, all nine devices)", 1800, 20),
    "test": Subset("test", "the whole TAU22 test split (29,680 clips): enough to evaluate trained or published weights", 0, None),
    "split25": Subset("split25", "the DCASE2025 training condition (split25) plus the whole test split", None, None),
}


@dataclass
class FetchReport:
    """What a fetch did: clips selected, fetched now, already present, bytes transferred, requests, time."""

    dest: Path
    subset: str
    seed: int
    clips: int
    clip_bytes: int
    fetched: int = 0
    present: int = 0
    bytes_transferred: int = 0
    requests: int = 0
    archives: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for people: what is in the folder and what this run transferred."""
        return (f"{self.clips:,} clips ({self.clip_bytes / 1e6:,.1f} MB) of subset '{self.subset}' in {self.dest}: "
                f"{self.fetched:,} fetched now, {self.present:,} already there; {self.bytes_transferred / 1e6:,.1f} MB in "
                f"{self.requests:,} requests from {len(self.archives)} archives, {self.seconds:.1f} s.")


def subset_size(clips: int) -> int:
    """Bytes of `clips` TAU22 wav files (every clip has the same size)."""
    return clips * CLIP_BYTES


# --- choosing the clips ------------------------------------------------------------------------------------------------


def _pick(cell: pd.DataFrame, quota: int, rng: np.random.Generator, prefer: list[str]) -> list[str]:
    """`quota` file names of one (device, class) cell: whole recordings (their 1 s clips in order), first those in
    `prefer` (recordings other devices already gave, so that parallel versions come together), then one recording per
    location in turn, locations and recordings in a seeded order; only the last recording may be cut short. Appends the
    recordings it takes to `prefer`."""
    fields = cell["filename"].map(tau.parse_filename)
    recording = [f"{f['city']}-{f['location']}-{f['segment']}" for f in fields]
    clips = (cell.assign(recording=recording, sub=[int(f["sub"]) for f in fields])
             .sort_values(["recording", "sub", "filename"]).groupby("recording", sort=True)["filename"].agg(list))
    where = cell.assign(recording=recording).groupby("recording", sort=True)["location"].first()
    per_location = {loc: list(rng.permutation(sorted(recs.index))) for loc, recs in where.groupby(where, sort=True)}
    order = [per_location[loc] for loc in rng.permutation(sorted(per_location))]
    rotation = [recs[depth] for depth in range(max((len(o) for o in order), default=0)) for recs in order if depth < len(recs)]
    preferred = [r for r in prefer if r in clips.index]
    known = set(prefer)
    out: list[str] = []
    for rec in preferred + [r for r in rotation if r not in known]:
        if len(out) >= quota:
            break
        out += clips[rec]
        if rec not in known:
            prefer.append(rec)
    return out[:quota]


def _quotas(counts: pd.Series, total: int) -> pd.Series:
    """Split `total` over the cells of `counts` in proportion (largest remainder), never more than a cell holds."""
    if total >= counts.sum():
        return counts.copy()
    exact = counts * total / counts.sum()
    base = np.floor(exact).astype(int)
    extra = (exact - base).sort_values(ascending=False, kind="stable").index[: total - int(base.sum())]
    base.loc[extra] += 1
    return base


def select_clips(meta: pd.DataFrame, split25: pd.DataFrame, test: pd.DataFrame, subset: Subset, seed: int = 0) -> list[str]:
    """File names of a subset, sorted: training clips from split25 and test clips from the test split (see `Subset`).

    `meta` needs the derived columns of `tau.add_columns`; the split tables need a filename column. Training clips keep
    split25's proportions per device and class; test clips are the same number per class and device. Within each
    (device, class) cell, whole 10 s recordings are taken (their clips are neighbours in the archives, so they are fetched
    together): first recordings already taken for another device (parallel versions, to compare devices on the same
    sound), then one per recording location in turn, so a subset samples many places. The training and test parts come
    from the official splits, whose recording locations are disjoint.
    """
    rng = np.random.default_rng(seed)
    train = meta[meta["filename"].isin(set(split25["filename"]))]
    chosen: list[str] = []
    if subset.train_clips is None:
        chosen += list(train["filename"])
    elif subset.train_clips > 0 and len(train):
        counts = train.groupby(["device", "scene_label"]).size()
        quotas = _quotas(counts, subset.train_clips)
        taken: dict[str, list[str]] = {scene: [] for scene in CLASSES}  # recordings per class, across devices
        cells = dict(list(train.groupby(["device", "scene_label"], sort=True)))
        for key in sorted(cells, key=lambda k: (DEVICES.index(k[0]) if k[0] in DEVICES else len(DEVICES), k)):
            chosen += _pick(cells[key], int(quotas[key]), rng, taken.setdefault(key[1], []))
    tested = meta[meta["filename"].isin(set(test["filename"]))]
    if subset.test_per_cell is None:
        chosen += list(tested["filename"])
    else:
        taken = {}
        for (_, scene), cell in tested.groupby(["device", "scene_label"], sort=True):
            chosen += _pick(cell, subset.test_per_cell, rng, taken.setdefault(scene, []))
    return sorted(set(chosen))


# --- reading zip archives through ranges ---------------------------------------------------------------------------------


class _NotFound(Exception):
    """The server has no such archive (404)."""


class _Transport(RemoteFetcher):
    """A range reader for remotezip: bytes [lo, hi] of one archive (lo < 0: the last -lo bytes) with the archive's size.

    While `block` is set, reads are served from that block (one request covering several members), so `zipfile` parses
    the members of a block without further requests. The archive's size is remembered from the first answer; a later
    answer with another size means the archive changed.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.size: int | None = None
        self.block: tuple[int, bytes] | None = None

    def describe(self) -> str:
        """Where the archive is read from, for messages."""
        raise NotImplementedError

    def read(self, lo: int, hi: int | None) -> tuple[int, bytes, int]:
        """(offset, bytes, archive size) of the range; implemented by the HTTP and local transports."""
        raise NotImplementedError

    def fetch(self, data_range: tuple[int, int | None], stream: bool = False) -> PartialBuffer:
        """remotezip's hook: a PartialBuffer holding the requested range."""
        lo, hi = data_range
        if self.block is not None:
            start, data = self.block
            if lo < start or hi is None or hi >= start + len(data):
                raise FetchError(f"internal error: range {lo}-{hi} of {self.name} outside the fetched block "
                                 f"{start}-{start + len(data) - 1}. Please report this.")
            return PartialBuffer(io.BytesIO(data[lo - start: hi - start + 1]), lo, hi - lo + 1, False)
        offset, data = self.read_checked(lo, hi)
        return PartialBuffer(io.BytesIO(data), offset, len(data), False)

    def read_checked(self, lo: int, hi: int | None) -> tuple[int, bytes]:
        """(offset, bytes) of a range, checking that the archive still has the size it had when its directory was read."""
        offset, data, size = self.read(lo, hi)
        if self.size is None:
            self.size = size
        elif size != self.size:
            raise FetchError(f"{self.describe()} changed while it was read: its size was {self.size:,} bytes and is now "
                             f"{size:,}. Run the same command again to read the new version; already fetched clips are kept "
                             "if they still match.")
        return offset, data


class _HttpTransport(_Transport):
    """Ranges of an archive on an HTTP server (Zenodo or a mirror), with a requests session per thread."""

    def __init__(self, name: str, url: str) -> None:
        super().__init__(name)
        self.url = url
        self._local = threading.local()

    def describe(self) -> str:
        return f"the archive {self.url}"

    def _session(self):
        import requests

        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
            self._local.session.headers.update({"User-Agent": "asc-tutorial (asc data fetch)", "Accept-Encoding": "identity"})
        return self._local.session

    def read(self, lo: int, hi: int | None) -> tuple[int, bytes, int]:
        import requests

        spec = f"bytes={lo}" if hi is None else f"bytes={lo}-{hi}"
        for attempt in range(len(RETRY_DELAYS) + 1):
            try:
                response = self._session().get(self.url, headers={"Range": spec}, stream=True, timeout=TIMEOUT)
            except requests.RequestException as exc:
                if not _unreachable(exc) and attempt < len(RETRY_DELAYS):  # a dropped connection: try again
                    time.sleep(RETRY_DELAYS[attempt])
                    continue
                raise FetchError(f"Could not reach {self.url}: {exc}.") from exc
            with response:
                if response.status_code == 404:
                    raise _NotFound(self.url)
                retry = response.status_code == 429 or response.status_code >= 500
                if retry and attempt < len(RETRY_DELAYS):
                    time.sleep(_retry_after(response.headers.get("Retry-After"), RETRY_DELAYS[attempt]))
                    continue
                if response.status_code == 200:
                    raise _RangeIgnored(self.url)
                if response.status_code != 206:
                    raise FetchError(f"{self.url} answered HTTP {response.status_code} {response.reason} to a range request "
                                     f"({spec}); expected 206 Partial Content.")
                offset, end, size = _content_range(response.headers.get("Content-Range", ""), self.url)
                if (hi is not None and (offset, end) != (lo, min(hi, size - 1))) or (hi is None and end != size - 1):
                    raise FetchError(f"{self.url} answered the range {spec} with bytes {offset}-{end}: the server does not "
                                     "serve byte ranges as requested.")
                try:
                    data = response.raw.read(end - offset + 1, decode_content=False)
                except Exception as exc:  # urllib3 and socket errors while the body streams in
                    if attempt < len(RETRY_DELAYS):
                        time.sleep(RETRY_DELAYS[attempt])
                        continue
                    raise FetchError(f"The connection to {self.url} broke off during a download: {exc}.") from exc
                if len(data) != end - offset + 1:
                    if attempt < len(RETRY_DELAYS):
                        time.sleep(RETRY_DELAYS[attempt])
                        continue
                    raise FetchError(f"{self.url} sent {len(data):,} of the {end - offset + 1:,} bytes of range {spec}.")
                return offset, data, size
        raise AssertionError("unreachable")


def _unreachable(exc: Exception) -> bool:
    """True when no connection could be opened at all (refused, unknown host, connect timeout): retrying will not help."""
    import requests
    from urllib3.exceptions import NewConnectionError

    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(exc, requests.ConnectTimeout) or isinstance(reason, NewConnectionError)


def _retry_after(header: str | None, default: float) -> float:
    """Seconds to wait from a Retry-After header (seconds form; an HTTP date falls back to the default), at most a minute."""
    try:
        return min(float(header), 60.0) if header else default
    except ValueError:
        return default


class _RangeIgnored(Exception):
    """The server answered a range request with the whole file."""


def _content_range(header: str, url: str) -> tuple[int, int, int]:
    """(first, last, total) of a 'bytes first-last/total' header."""
    try:
        unit, rest = header.split(" ", 1)
        span, total = rest.split("/")
        first, last = span.split("-")
        if unit != "bytes":
            raise ValueError(unit)
        return int(first), int(last), int(total)
    except ValueError:
        raise FetchError(f"{url} answered a range request with Content-Range '{header}'; expected 'bytes FIRST-LAST/TOTAL' "
                         "with the archive's total size.") from None


class _LocalTransport(_Transport):
    """Ranges of a local copy of an archive: the same zip reading, no HTTP."""

    def __init__(self, name: str, path: Path) -> None:
        super().__init__(name)
        self.path = path

    def describe(self) -> str:
        return f"the archive {self.path}"

    def read(self, lo: int, hi: int | None) -> tuple[int, bytes, int]:
        with open(self.path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            start = max(size + lo, 0) if hi is None else lo
            end = size - 1 if hi is None else min(hi, size - 1)
            fh.seek(start)
            return start, fh.read(end - start + 1), size


@dataclass(eq=False)  # compared and hashed by identity: used as a dict key
class _Archive:
    """One audio archive: its members by TAU22 file name, where each member ends, and a lock for parsing."""

    transport: _Transport
    zip: zipfile.ZipFile
    members: dict[str, zipfile.ZipInfo]
    ends: dict[int, int]  # header offset -> offset of the next member (or of the central directory)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, transport: _Transport) -> _Archive:
        """Read the central directory (remotezip: a suffix range, then the directory range if it is larger)."""
        try:
            archive = RemoteZip(transport.name, initial_buffer_size=TAIL_BYTES, fetcher=lambda *a, **k: transport)
        except zipfile.BadZipFile as exc:
            raise FetchError(f"{transport.describe()} is not a readable zip archive ({exc}).") from exc
        members = {}
        for info in archive.infolist():
            path = PurePosixPath(info.filename)
            if path.suffix == ".wav" and path.parent.name == "audio":
                members[f"audio/{path.name}"] = info
        offsets = sorted(i.header_offset for i in archive.infolist()) + [archive.start_dir]
        return cls(transport, archive, members, dict(zip(offsets, offsets[1:])))

    def extract(self, infos: list[zipfile.ZipInfo], start: int, data: bytes) -> list[bytes]:
        """Parse members out of one fetched block with zipfile (local header, inflate, CRC-32 check)."""
        with self.lock:
            self.transport.block = (start, data)
            try:
                return [self.zip.read(info) for info in infos]
            finally:
                self.transport.block = None


@dataclass
class _Run:
    """Neighbouring members of one archive fetched with one request: bytes [start, end)."""

    archive: _Archive
    start: int
    end: int
    members: list[tuple[str, zipfile.ZipInfo]]


def _plan_runs(archive: _Archive, wanted: list[str], have: list[str]) -> list[_Run]:
    """Group the wanted members of an archive into requests: close neighbours together (never across a member we already
    have, so no clip is transferred twice), each request bounded."""
    kept = sorted(archive.members[k].header_offset for k in have)
    runs: list[_Run] = []
    for key in sorted(wanted, key=lambda k: archive.members[k].header_offset):
        info = archive.members[key]
        start, end = info.header_offset, archive.ends[info.header_offset]
        last = runs[-1] if runs else None
        if (last is not None and start - last.end <= MERGE_GAP and end - last.start <= MAX_REQUEST
                and bisect.bisect_left(kept, last.end) == bisect.bisect_left(kept, start)):
            last.end = end
            last.members.append((key, info))
        else:
            runs.append(_Run(archive, start, end, [(key, info)]))
    return runs


# --- the destination folder ----------------------------------------------------------------------------------------------


def _crc_of(path: Path) -> int:
    crc = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            crc = zlib.crc32(block, crc)
    return crc


def _atomic_bytes(path: Path, data: bytes) -> None:
    """Write a file under a temporary name in the same folder, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_table(path: Path, table: pd.DataFrame) -> None:
    _atomic_bytes(path, table.to_csv(sep="\t", index=False, lineterminator="\n").encode("utf-8"))


def _remove_parts(dest: Path) -> None:
    """Delete the temporary files of interrupted writes (only ours: '.NAME.*.part' in the folders this module writes)."""
    for folder in (dest, dest / "audio", dest / "split_setup", dest / WORK):
        if folder.is_dir():
            for tmp in folder.glob(".*.part"):
                tmp.unlink(missing_ok=True)


def _claim(dest: Path, subset: str, seed: int, source: str) -> tuple[dict, bool]:
    """Check that dest is new, empty or an earlier fetch of the same subset; mark it as ours. Returns (state, created)."""
    state_path = dest / WORK / "state.json"
    if dest.exists() and not dest.is_dir():
        raise FetchError(f"--dest '{dest}' is a file; expected a new or empty folder (or one an earlier `asc data fetch` "
                         "wrote). Choose another path.")
    created = not dest.exists()
    if state_path.exists():
        state = json.loads(state_path.read_text(encoding="utf-8"))
        if (state.get("subset"), state.get("seed")) != (subset, seed):
            raise FetchError(f"'{dest}' holds the subset '{state.get('subset')}' (seed {state.get('seed')}) from an earlier "
                             f"fetch; you asked for '{subset}' (seed {seed}). Fetch into another folder, or delete this one.")
        return state, False
    if dest.exists() and any(dest.iterdir()):
        found = ", ".join(sorted(p.name for p in dest.iterdir())[:5])
        raise FetchError(f"'{dest}' is not empty ({found}) and was not written by `asc data fetch`; expected a new or empty "
                         "folder, so that no file of yours is overwritten. Choose another --dest.")
    state = {"written_by": "asc data fetch", "subset": subset, "seed": seed, "source": source, "complete": False}
    (dest / WORK).mkdir(parents=True, exist_ok=True)
    _atomic_bytes(state_path, (json.dumps(state, indent=2) + "\n").encode())
    return state, created


def _forget(dest: Path, created: bool) -> None:
    """After a failure before any clip was written: remove what this fetch created, so nothing half-made is left."""
    audio = dest / "audio"
    if audio.is_dir() and any(audio.glob("*.wav")):
        return  # clips are kept for the next run, which resumes
    shutil.rmtree(dest / WORK, ignore_errors=True)
    for folder in (audio, dest) if created else (audio,):
        try:
            folder.rmdir()  # only if empty: never anything else
        except OSError:
            pass


# --- the fetch -------------------------------------------------------------------------------------------------------------


def _url(base: str, name: str) -> str:
    return f"{base.rstrip('/')}/{urllib.parse.quote(name)}?download=1"


def _manual(subset: str, dest: Path, archives: list[str] | None = None) -> str:
    """The manual alternative, for error messages: which archives to download, and the command that reads them."""
    names = (f"{META_ARCHIVE} and the {AUDIO_ARCHIVE_COUNT} audio archives ({AUDIO_ARCHIVES[0]} ... .audio.{AUDIO_ARCHIVE_COUNT}.zip)"
             if archives is None else f"{META_ARCHIVE} and {', '.join(archives)}")
    return (f"Manual alternative: download {names} from https://zenodo.org/records/{ZENODO_RECORD} into one folder, then run "
            f"`asc data fetch --dest {shell_quote(dest)} --subset {subset} --from-archives FOLDER`: it extracts only the selected clips.")


def _read_meta(meta_zip: Path) -> bytes:
    """meta.csv out of the meta archive (the shortest path ending in meta.csv)."""
    try:
        with zipfile.ZipFile(meta_zip) as zf:
            names = sorted((n for n in zf.namelist() if PurePosixPath(n).name == "meta.csv"), key=len)
            if not names:
                raise FetchError(f"'{meta_zip}' holds no meta.csv (found {zf.namelist()[:5]}); expected the TAU22 meta archive "
                                 f"{META_ARCHIVE}. The release may have changed.")
            return zf.read(names[0])
    except zipfile.BadZipFile as exc:
        raise FetchError(f"'{meta_zip}' is not a readable zip archive ({exc}); expected {META_ARCHIVE}.") from exc


def _split_tables(release: Path, split_source: Path | None, progress: bool) -> dict[str, pd.DataFrame]:
    """The six official split files for the release folder: copied from split_source if there, else downloaded (verified)."""
    folder = release / "split_setup"
    copied = []
    if split_source is not None:
        for name in tau.SPLIT_NAMES:
            for candidate in (split_source / "split_setup" / f"{name}.csv", split_source / f"{name}.csv"):
                if candidate.is_file():
                    folder.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(candidate, folder / f"{name}.csv")
                    copied.append(name)
                    break
    try:
        tau.ensure_split_files(release, tau.SPLIT_NAMES, progress=progress)
        if copied:
            tau.verify_split_files(folder, tau.SPLIT_NAMES)
    except tau.DataError as exc:
        where = (f"into '{split_source}'" if split_source else
                 "next to the TAU22 archives and pass that folder with --from-archives")
        raise FetchError(f"The TAU22 split files are needed to choose the clips but could not be obtained: "
                         f"{exc.__cause__ or exc}. They come from {tau.SPLIT_URL.format(name='<name>.csv')} (<name> = "
                         f"{', '.join(tau.SPLIT_NAMES)}); run the same command again later, or download the six files by "
                         f"hand and put them {where}.") from exc
    return {name: tau.read_split_file(folder / f"{name}.csv") for name in tau.SPLIT_NAMES}


def _open_archives(transports: list[_Transport], workers: int, progress: bool, optional_after: int) -> list[_Archive]:
    """Read every archive's central directory (in parallel); an HTTP 404 after `optional_after` archives ends the list."""
    archives: list[_Archive | None] = [None] * len(transports)
    missing: list[int] = []

    def one(i: int) -> None:
        try:
            archives[i] = _Archive.open(transports[i])
        except _NotFound:
            missing.append(i)

    with ThreadPoolExecutor(max_workers=workers) as pool, tqdm(
        total=len(transports), desc="archive directories", unit="archive", disable=not progress, leave=False
    ) as bar:
        for future in [pool.submit(one, i) for i in range(len(transports))]:
            future.result()
            bar.update()
    if missing and min(missing) < optional_after:
        transport = transports[min(missing)]
        raise FetchError(f"{transport.describe()} was not found (HTTP 404); expected the TAU22 release at that address.")
    first_gap = min(missing) if missing else len(transports)
    return [a for a in archives[:first_gap] if a is not None]


def fetch(dest: str | os.PathLike, subset: str = "mini", base_url: str | None = None, workers: int = 4,
          from_archives: str | os.PathLike | None = None, seed: int = 0, progress: bool = True) -> FetchReport:
    """Fetch a subset of real TAU22 clips into dest (TAU22 layout + data card), reading only the needed zip members.

    `base_url` is the folder URL of the release (default: Zenodo record 6337421); `from_archives` reads local copies of
    the archives instead. Every clip is CRC-32-checked and written atomically; an interrupted fetch resumes where it
    stopped, keeping the clips it already has. Raises FetchError with the manual alternative when that is not possible.
    """
    started = time.perf_counter()
    if subset not in SUBSETS:
        raise FetchError(f"Unknown subset '{subset}': expected one of {', '.join(SUBSETS)}.")
    if base_url is not None and from_archives is not None:
        raise FetchError("--base-url and --from-archives were both given; expected one source: the archives on a server "
                         "(--base-url, default Zenodo) or local copies (--from-archives). Drop one of them.")
    if workers < 1:
        raise FetchError(f"--workers must be at least 1, got {workers}.")
    dest = Path(dest).expanduser()
    local = Path(from_archives).expanduser() if from_archives is not None else None
    base = (base_url or ZENODO_URL).rstrip("/")
    if local is not None and not (local / META_ARCHIVE).is_file():
        raise FetchError(f"--from-archives '{local}' has no {META_ARCHIVE}; expected a folder with the TAU22 meta archive "
                         f"and the audio archives ({AUDIO_ARCHIVES[0]} ... {AUDIO_ARCHIVES[-1]}) as downloaded from "
                         f"https://zenodo.org/records/{ZENODO_RECORD}.")
    source = str(local.resolve()) if local is not None else base
    state, created = _claim(dest, subset, seed, source)
    try:
        return _fetch(dest, SUBSETS[subset], seed, base, local, workers, progress, state, started)
    except BaseException:
        _remove_parts(dest)
        _forget(dest, created)
        raise


def _fetch(dest: Path, spec: Subset, seed: int, base: str, local: Path | None, workers: int, progress: bool,
           state: dict, started: float) -> FetchReport:
    work = dest / WORK
    _remove_parts(dest)
    # meta.csv and the split files decide which clips are needed
    if local is not None:
        meta_zip = local / META_ARCHIVE
    else:
        from asc_utils.download import DownloadError, download

        meta_zip, url = work / META_ARCHIVE, _url(base, META_ARCHIVE)
        try:
            download(url, meta_zip, progress=progress)
        except DownloadError as exc:
            raise FetchError(f"Could not download the TAU22 meta archive from {url} ({exc.__cause__ or exc}). Are you offline, "
                             "or is the server down? Run the same command again later. " + _manual(spec.name, dest)) from exc
    release = work / "release"
    release.mkdir(parents=True, exist_ok=True)
    _atomic_bytes(release / "meta.csv", _read_meta(meta_zip))
    raw_meta = tau.load_meta(release)
    splits = _split_tables(release, local, progress)
    chosen = select_clips(raw_meta, splits["split25"], splits["test"], spec, seed)
    if not chosen:
        raise FetchError(f"The subset '{spec.name}' selects no clips from this release: meta.csv and the split files do not "
                         "share file names. Check that they belong to TAU Urban Acoustic Scenes 2022 Mobile.")
    report = FetchReport(dest, spec.name, seed, len(chosen), 0)

    # the archives' central directories map every wav to its archive
    if local is not None:
        names = [n for n in AUDIO_ARCHIVES if (local / n).is_file()]
        transports: list[_Transport] = [_LocalTransport(n, local / n) for n in names]
        optional_after = 0
    else:
        transports = [_HttpTransport(n, _url(base, n)) for n in AUDIO_ARCHIVES]
        optional_after = 1  # a mirror or test server may hold fewer archives: the first 404 ends the list
    if not transports:
        raise FetchError(f"'{local}' holds no audio archive; expected some of {AUDIO_ARCHIVES[0]} ... {AUDIO_ARCHIVES[-1]}.")
    try:
        archives = _open_archives(transports, workers, progress, optional_after)
    except _RangeIgnored as exc:
        raise FetchError(f"The server at {exc} does not support HTTP range requests (it answered with the whole file), so "
                         "single clips cannot be read out of the archives. " + _manual(spec.name, dest)) from None
    except FetchError as exc:
        raise FetchError(f"{exc} Check your internet connection and run the same command again. "
                         + _manual(spec.name, dest)) from None
    where: dict[str, _Archive] = {}
    for archive in archives:
        for key in archive.members:
            where.setdefault(key, archive)
    lost = [k for k in chosen if k not in where]
    if lost:
        absent = [n for n in AUDIO_ARCHIVES if n not in {a.transport.name for a in archives}]
        hint = (f"Download the missing archives ({', '.join(absent)}) into '{local}' and run again." if local is not None and absent
                else "The release differs from the TAU22 development set this tool knows (16 audio archives holding every "
                     "clip of meta.csv). " + _manual(spec.name, dest))
        raise FetchError(f"{len(lost):,} of the {len(chosen):,} selected clips are in none of the {len(archives)} audio "
                         f"archives read (e.g. {', '.join(lost[:3])}). {hint}")
    report.archives = sorted({where[k].transport.name for k in chosen})
    report.clip_bytes = sum(where[k].members[k].file_size for k in chosen)

    # clips already in place (an earlier, interrupted run) are kept when their size and CRC-32 match
    todo: dict[_Archive, list[str]] = {}
    have: dict[_Archive, list[str]] = {}
    for key in chosen:
        info, path = where[key].members[key], dest / key
        if path.is_file() and path.stat().st_size == info.file_size and _crc_of(path) == info.CRC:
            have.setdefault(where[key], []).append(key)
            report.present += 1
        else:
            todo.setdefault(where[key], []).append(key)
    runs = [run for archive, keys in todo.items() for run in _plan_runs(archive, keys, have.get(archive, []))]
    _download(runs, dest, report, workers, progress, local is not None)

    # the TAU22 layout, restricted to the fetched clips; written last, so an unfinished folder never looks complete
    keep = set(chosen)
    meta_table = tau.read_table(release / "meta.csv")
    for name, table in splits.items():
        _atomic_table(dest / "split_setup" / f"{name}.csv", table[table["filename"].isin(keep)])
    _atomic_table(dest / "meta.csv", meta_table[meta_table["filename"].isin(keep)])
    _write_card(dest, spec, seed, raw_meta[raw_meta["filename"].isin(keep)], splits, report)
    state["complete"] = True
    _atomic_bytes(work / "state.json", (json.dumps(state, indent=2) + "\n").encode())
    shutil.rmtree(release, ignore_errors=True)
    (work / META_ARCHIVE).unlink(missing_ok=True)
    report.seconds = time.perf_counter() - started
    return report


def _download(runs: list[_Run], dest: Path, report: FetchReport, workers: int, progress: bool, local: bool) -> None:
    """Fetch the runs with `workers` threads; each member is CRC-checked by zipfile and written atomically."""
    if not runs:
        return
    total_files = sum(len(r.members) for r in runs)
    total_bytes = sum(info.file_size for r in runs for _, info in r.members)
    bar = tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1000, desc=f"TAU22 {report.subset}",
               disable=not progress)
    bar.set_postfix_str(f"files 0/{total_files:,}")
    lock = threading.Lock()

    def one(run: _Run) -> None:
        _, data = run.archive.transport.read_checked(run.start, run.end - 1)
        try:
            payloads = run.archive.extract([info for _, info in run.members], run.start, data)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise _MemberError(run, exc) from exc
        for (key, info), payload in zip(run.members, payloads):
            if len(payload) != info.file_size:
                raise _MemberError(run, ValueError(f"{key}: {len(payload)} bytes, expected {info.file_size}"))
            _atomic_bytes(dest / key, payload)
            with lock:
                report.fetched += 1
                bar.update(info.file_size)
                bar.set_postfix_str(f"files {report.fetched:,}/{total_files:,}", refresh=False)
        with lock:
            report.requests += 1
            report.bytes_transferred += len(data)

    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        futures = [pool.submit(one, run) for run in runs]
        wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in futures if f.done() and not f.cancelled() and f.exception() is not None), None)
        if failed is not None:
            for f in futures:
                f.cancel()
            pool.shutdown(wait=True)  # the runs in flight finish: each writes whole clips or none
            remaining = sorted({r.archive.transport.name for r, f in zip(runs, futures)
                                if f.cancelled() or f.exception() is not None})
            _raise_member_failure(failed.exception(), dest, report, remaining, local)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()


class _MemberError(Exception):
    """A member of a fetched block failed zipfile's checks (CRC-32, header, inflate)."""

    def __init__(self, run: _Run, cause: Exception) -> None:
        super().__init__(str(cause))
        self.run = run
        self.cause = cause


def _raise_member_failure(exc: BaseException, dest: Path, report: FetchReport, remaining: list[str], local: bool) -> None:
    """Turn a worker's failure into a FetchError that names what was kept and what to do."""
    kept = (f" {report.fetched + report.present:,} verified clips are in '{dest}'; running the same command again fetches only "
            "the rest.")
    if isinstance(exc, _MemberError):
        archive = exc.run.archive.transport.describe()
        raise FetchError(f"A clip from {archive} failed its check ({exc.cause}): the archive differs from the one whose "
                         "directory was read, or the transfer was corrupted. The damaged clip was not written." + kept
                         + ("" if local else " If it happens again, " + _manual(report.subset, dest, remaining)))
    if isinstance(exc, FetchError):
        raise FetchError(f"{exc}{kept}" + ("" if local else " " + _manual(report.subset, dest, remaining)))
    if isinstance(exc, _RangeIgnored):
        raise FetchError(f"The server at {exc} stopped answering range requests." + kept + " "
                         + _manual(report.subset, dest, remaining))
    raise exc


# --- the data card -----------------------------------------------------------------------------------------------------


def _counts(table: pd.DataFrame) -> dict:
    """Clips, and clips per device (fixed order), class and city, as the data card lists them."""
    devices = table["device"].value_counts()
    return {
        "clips": int(len(table)),
        "per_device": {d: int(devices[d]) for d in [*DEVICES, *sorted(set(devices.index) - set(DEVICES))] if d in devices},
        "per_class": {c: int((table["scene_label"] == c).sum()) for c in CLASSES},
        "per_city": {c: int(n) for c, n in sorted(table["city"].value_counts().items())},
    }


def _write_card(dest: Path, spec: Subset, seed: int, meta: pd.DataFrame, splits: dict[str, pd.DataFrame],
                report: FetchReport) -> None:
    """data_card.json (machine-readable; `asc data check` reads it) and DATA_CARD.md (for people)."""
    tables = {}
    for name, table in splits.items():
        tables[name] = _counts(meta[meta["filename"].isin(set(table["filename"]))])
    card = {
        "name": f"TAU Urban Acoustic Scenes 2022 Mobile, development: real subset '{spec.name}'",
        "synthetic": False,
        "real_subset": True,
        "statement": ("Real TAU22 recordings: a subset of the development set, fetched clip by clip from the original "
                      "release by `asc data fetch`. Results on it are TAU22 results on this subset, not on the full test split."
                      if spec.test_per_cell is not None else
                      "Real TAU22 recordings: a subset of the development set, fetched clip by clip from the original release "
                      "by `asc data fetch`; its test split is the complete official TAU22 test split."),
        "dataset": "TAU Urban Acoustic Scenes 2022 Mobile, development",
        "zenodo_record": ZENODO_RECORD,
        "licence": LICENCE,
        "subset": spec.name,
        "selection": spec.description,
        "seed": seed,
        "fetch_again": f"asc data fetch --dest <folder> --subset {spec.name}" + (f" --seed {seed}" if seed else ""),
        "meta_rows": int(len(meta)),
        "bytes": int(report.clip_bytes),
        "splits": tables,
    }
    _atomic_bytes(dest / "data_card.json", (json.dumps(card, indent=2) + "\n").encode())
    head = ["split", "clips", *DEVICES]
    lines = [
        f"# Data card: {card['name']}",
        "",
        f"**{card['statement']}**",
        "",
        f"- Source: {card['dataset']} (Zenodo record {ZENODO_RECORD}), the original 1 s, 44.1 kHz, 24-bit mono wav files, "
        "each checked against the CRC-32 of its zip archive.",
        f"- Subset `{spec.name}`: {spec.description}.",
        f"- Selection: seed {seed}; the training part comes from `split25.csv`, the test part from `test.csv`, so training "
        "and test recording locations stay disjoint as in TAU22. Fetch it again: "
        f"`{card['fetch_again']}` (same clips).",
        f"- {len(meta):,} clips, {report.clip_bytes / 1e6:,.1f} MB. `meta.csv` and `split_setup/*.csv` are the official "
        "files restricted to these clips.",
        f"- Licence: {LICENCE}",
        "",
        "Clips per split and device:",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for name, counts in tables.items():
        lines.append(f"| {name} | {counts['clips']:,} | " + " | ".join(f"{counts['per_device'].get(d, 0):,}" for d in DEVICES) + " |")
    for part in ("split25", "test"):
        counts = tables[part]
        lines += ["", f"`{part}` per class: " + ", ".join(f"{c} {n:,}" for c, n in counts["per_class"].items()) + ".",
                  f"`{part}` per city: " + (", ".join(f"{c} {counts['per_city'].get(c, 0):,}" for c in CITIES
                                                      if counts["per_city"].get(c)) or "none") + "."]
    _atomic_bytes(dest / "DATA_CARD.md", ("\n".join(lines) + "\n").encode())
