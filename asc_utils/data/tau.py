"""TAU Urban Acoustic Scenes 2022 Mobile (and the embedded data set with its layout): meta, split files, clips, Dataset.

A data folder holds `audio/`, `meta.csv` (tab-separated: filename, scene_label, identifier, source_label) and
`split_setup/` (split5/10/25/50/100.csv and test.csv). For the real data the split files are downloaded on first use
from the DCASE2024 baseline release; the embedded data set ships its own.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from asc_utils.audio import CLIP_SAMPLES, SAMPLE_RATE, read_wav
from asc_utils.errors import UserError
from asc_utils.labels import CLASS_TO_INDEX, CLASSES, DEVICES
from asc_utils.paths import shell_quote

META_COLUMNS = ("filename", "scene_label", "identifier", "source_label")
SPLIT_NAMES = ("split5", "split10", "split25", "split50", "split100", "test")
TRAIN_SPLIT_NAMES = SPLIT_NAMES[:-1]
SPLIT_URL = "https://github.com/CPJKU/dcase2024_task1_baseline/releases/download/files/{name}"
TEST_SHA256 = "99e17eb7950a26c46b2c35ae7f3020462f62bf1c6a9ba1b039bbf0a104ea19f9"
TAU_META_ROWS = 230_350
TAU_TEST_PER_DEVICE = {"a": 3300, "b": 3290, "c": 3290, **{f"s{i}": 3300 for i in range(1, 7)}}
SPLIT_FRACTION_TOLERANCE = 0.2  # the DCASE2024 subsets hold "approximately" 5/10/25/50 % of split100

_warned: set[str] = set()


class DataError(UserError, RuntimeError):
    """A data folder, meta file or split file is missing or does not look like TAU22."""


NEW_EMBEDDED_FOLDER = Path("data") / "tutorial"  # where messages suggest generating the embedded data set
OVERWRITE_DELETES = ("the generated files there (the clips in audio/, meta.csv, the split files, the data card and the cached "
                     "arrays) and nothing else")


def new_embedded_hint(data_dir: str | os.PathLike) -> str:
    """The command that generates the embedded data set into a new folder (never into the user's data_dir)."""
    target = NEW_EMBEDDED_FOLDER
    if Path(data_dir).expanduser().resolve() == target.resolve():
        target = Path(f"{target}-new")
    return f"`asc data synth --preset tutorial --out {shell_quote(target)}`"


def regenerate_hint(data_dir: str | os.PathLike, card: dict | None) -> str:
    """How to regenerate an embedded data set in place (its data card says `asc data synth` wrote it) and what that deletes."""
    preset = (card or {}).get("preset")
    name = preset.get("name", "tutorial") if isinstance(preset, dict) else "tutorial"
    seed = (card or {}).get("seed", 0)
    return (f"Regenerate it: `asc data synth --overwrite --preset {name} --seed {seed} --out {shell_quote(data_dir)}` (same preset and seed "
            f"give the same files; --overwrite deletes {OVERWRITE_DELETES}).")


def is_embedded(data_dir: str | os.PathLike) -> bool:
    """True for a generated (embedded, synthetic) data set: it carries a data_card.json that says so."""
    try:
        card = json.loads((Path(data_dir) / "data_card.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):  # no card, or one that cannot be read: not known to be generated
        return False
    return isinstance(card, dict) and bool(card.get("synthetic"))


def parse_filename(filename: str) -> dict[str, str]:
    """Split 'audio/<scene>-<city>-<location>-<segment>-<sub>-<device>.wav' into its six fields."""
    stem = Path(filename).name
    parts = stem[:-4].split("-") if stem.endswith(".wav") else []
    if len(parts) != 6:
        raise DataError(
            f"Unexpected file name '{filename}': expected 'audio/<scene>-<city>-<location>-<segment>-<sub>-<device>.wav' "
            "as in TAU22. Check that the meta/split file belongs to TAU Urban Acoustic Scenes 2022 Mobile."
        )
    return dict(zip(("scene", "city", "location", "segment", "sub", "device"), parts))


def _require_dir(data_dir: str | os.PathLike) -> Path:
    path = Path(data_dir).expanduser()
    if not (path / "meta.csv").exists():
        raise DataError(
            f"No data set found in '{path}': expected a folder with meta.csv, audio/ and split_setup/ (TAU22 layout), "
            f"found {'no such folder' if not path.exists() else 'no meta.csv'}. Point DATA_DIR / $ASC_DATA_DIR at an "
            f"extracted TAU22 folder (`asc data check --data-dir {shell_quote(path)}` explains what it lacks), or generate the embedded "
            f"data set into a new folder with {new_embedded_hint(path)} and use that."
        )
    return path


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a TAU tab-separated table (meta.csv or a split file; CRLF or LF line ends) with every column as strings."""
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def add_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Add device, city, location and label columns derived from the file names and scene labels."""
    fields = table["filename"].map(parse_filename)
    out = table.copy()
    out["device"] = [f["device"] for f in fields]
    out["city"] = [f["city"] for f in fields]
    out["location"] = [f"{f['city']}-{f['location']}" for f in fields]
    unknown = sorted(set(out["scene_label"]) - set(CLASSES))
    if unknown:
        raise DataError(f"Unknown scene labels {unknown[:5]}: expected the 10 TAU22 classes {list(CLASSES)}.")
    out["label"] = out["scene_label"].map(CLASS_TO_INDEX).astype(np.int64)
    return out


def load_meta(data_dir: str | os.PathLike) -> pd.DataFrame:
    """Read meta.csv (filename, scene_label, identifier, source_label) and add device, city, location, label."""
    path = _require_dir(data_dir) / "meta.csv"
    meta = read_table(path)
    missing = [c for c in META_COLUMNS if c not in meta.columns]
    if missing:
        raise DataError(
            f"'{path}' lacks the columns {missing}: expected tab-separated columns {list(META_COLUMNS)}, "
            f"found {list(meta.columns)}. Use the meta.csv shipped with TAU22 (not a re-saved copy with another separator)."
        )
    return add_columns(meta[list(META_COLUMNS)])


def split_dir(data_dir: str | os.PathLike) -> Path:
    """Where the split files of a data folder live: <data dir>/split_setup, or the user cache when the folder is read-only."""
    data_dir = Path(data_dir)
    local = data_dir / "split_setup"
    if local.exists() or os.access(data_dir, os.W_OK):
        return local
    from asc_utils.paths import cache_dir

    return cache_dir() / "split_setup" / "tau22"


def verify_split_files(folder: str | os.PathLike, names: tuple[str, ...] = SPLIT_NAMES) -> None:
    """Check TAU22 split files: test.csv by sha256; the training splits non-empty, nested (5 in 10 in 25 in 50 in 100)
    and holding about p % of split100 (the exact row counts are not published with the files)."""
    from asc_utils.download import sha256_of

    folder = Path(folder)
    if "test" in names and (found := sha256_of(folder / "test.csv")) != TEST_SHA256:
        raise DataError(f"'{folder / 'test.csv'}' has sha256 {found}, expected {TEST_SHA256}. Delete it to download it again.")
    if not set(TRAIN_SPLIT_NAMES) & set(names):
        return
    sets = {name: set(read_table(folder / f"{name}.csv")["filename"]) for name in TRAIN_SPLIT_NAMES}
    for name, files in sets.items():
        if not files:
            raise DataError(f"'{folder / (name + '.csv')}' is empty. Delete it to download it again.")
    for small, big in zip(TRAIN_SPLIT_NAMES, TRAIN_SPLIT_NAMES[1:]):
        if not sets[small] <= sets[big]:
            raise DataError(f"{small}.csv is not contained in {big}.csv in '{folder}': the files are not the nested TAU22 "
                            "subsets. Delete the split files to download them again.")
    total = len(sets["split100"])
    for name in TRAIN_SPLIT_NAMES[:-1]:
        fraction, expected = len(sets[name]) / total, int(name[5:]) / 100
        if abs(fraction - expected) > SPLIT_FRACTION_TOLERANCE * expected:
            raise DataError(f"{name}.csv holds {len(sets[name])} of {total} training clips ({fraction:.1%}), expected about "
                            f"{expected:.0%}. Delete the split files in '{folder}' to download them again.")


def ensure_split_files(data_dir: str | os.PathLike, names: tuple[str, ...] = SPLIT_NAMES, progress: bool = True) -> Path:
    """Return the folder holding the named split files; for the real data, download missing ones and verify them
    (asking for any training split fetches all five, since they are verified together)."""
    data_dir = _require_dir(data_dir)
    folder = split_dir(data_dir)
    group = tuple(n for n in SPLIT_NAMES if n in names or (n in TRAIN_SPLIT_NAMES and set(names) & set(TRAIN_SPLIT_NAMES)))
    missing = [n for n in group if not (folder / f"{n}.csv").exists()]
    if not missing:
        return folder
    if is_embedded(data_dir):
        card = json.loads((data_dir / "data_card.json").read_text(encoding="utf-8"))
        raise DataError(f"The embedded data set in '{data_dir}' lacks {missing} in split_setup/. {regenerate_hint(data_dir, card)}")
    from asc_utils.download import DownloadError, download

    for name in missing:
        url = SPLIT_URL.format(name=f"{name}.csv")
        try:
            download(url, folder / f"{name}.csv", sha256=TEST_SHA256 if name == "test" else None, progress=progress)
        except DownloadError as exc:
            raise DataError(
                f"The TAU22 split file {name}.csv is not in '{folder}' and could not be downloaded ({exc}). Download "
                f"{url} on a machine with internet access and put it into '{folder}'."
            ) from exc
    try:
        verify_split_files(folder, group)
    except DataError:
        for name in missing:  # do not keep files that failed the check
            (folder / f"{name}.csv").unlink(missing_ok=True)
        raise
    return folder


def split_name(name: str) -> str:
    """The canonical split name ('split25', 'test') of '25', 'split25', 'split25.csv', 'test' ...; ValueError if unknown."""
    key = str(name).removesuffix(".csv")
    key = f"split{key}" if key.isdigit() else key
    if key not in SPLIT_NAMES:
        raise ValueError(f"Unknown split '{name}': expected one of {', '.join(SPLIT_NAMES)}.")
    return key


def read_split_file(path: str | os.PathLike) -> pd.DataFrame:
    """Read one TAU22 split file (filename[, scene_label]); check it has a filename column."""
    table = read_table(Path(path))
    if "filename" not in table.columns:
        raise DataError(f"'{path}' has no 'filename' column: expected a tab-separated TAU22 split file "
                        f"(filename, scene_label), found columns {list(table.columns)}.")
    return table


def load_split(data_dir: str | os.PathLike, name: str) -> pd.DataFrame:
    """Rows of one split (split5/10/25/50/100 or test) joined with meta.csv: device, city, location, label columns."""
    key = split_name(name)
    meta = load_meta(data_dir)
    path = ensure_split_files(data_dir, (key,)) / f"{key}.csv"
    files = read_split_file(path)
    merged = files[["filename"]].merge(meta, on="filename", how="left", validate="one_to_one")
    missing = merged["scene_label"].isna()
    if missing.any():
        examples = ", ".join(merged.loc[missing, "filename"].head(3))
        raise DataError(f"{int(missing.sum())} files of '{path}' are not in meta.csv (e.g. {examples}). The split file "
                        "and meta.csv belong to different data sets: regenerate or re-extract the data folder.")
    if "scene_label" in files.columns and (files["scene_label"].to_numpy() != merged["scene_label"].to_numpy()).any():
        raise DataError(f"Scene labels in '{path}' disagree with meta.csv: the files belong to different data sets.")
    merged["label"] = merged["label"].astype(np.int64)
    return merged


def _warn_once(kind: str, message: str) -> None:
    """Warn about a kind of input problem once per process (naming the first file it was seen in)."""
    if kind not in _warned:
        _warned.add(kind)
        warnings.warn(message + " (further files with this problem are handled silently)", stacklevel=3)


def load_clip(path: str | os.PathLike) -> np.ndarray:
    """Read one clip as float32 [44100]: mono-mix, resample to 44.1 kHz and crop/pad to 1 s, warning once per kind."""
    wave, sr = read_wav(path)
    if wave.shape[0] > 1:
        _warn_once("channels", f"'{path}' has {wave.shape[0]} channels; mixing to mono (TAU22 clips are mono).")
        wave = wave.mean(axis=0, keepdims=True)
    if sr != SAMPLE_RATE:
        import torch

        from asc_utils.audio import resample

        _warn_once("rate", f"'{path}' is sampled at {sr} Hz; resampling to {SAMPLE_RATE} Hz (TAU22 clips are 44.1 kHz).")
        wave = resample(torch.from_numpy(np.ascontiguousarray(wave)), sr, SAMPLE_RATE).numpy()
    n = wave.shape[1]
    if n != CLIP_SAMPLES:
        _warn_once("length", f"'{path}' has {n} samples; {'cropping' if n > CLIP_SAMPLES else 'zero-padding'} "
                             f"to {CLIP_SAMPLES} (TAU22 clips are exactly 1 s).")
        wave = wave[:, :CLIP_SAMPLES] if n > CLIP_SAMPLES else np.pad(wave, ((0, 0), (0, CLIP_SAMPLES - n)))
    return np.ascontiguousarray(wave[0], dtype=np.float32)


def device_counts(table: pd.DataFrame) -> dict[str, int]:
    """Clips per device in the fixed device order (devices without clips are left out)."""
    counts = table["device"].value_counts()
    return {d: int(counts[d]) for d in DEVICES if d in counts}
