"""`asc data check`: verify a TAU22-layout data folder (real or embedded) and explain every problem found."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from asc_utils.audio import CLIP_SAMPLES, SAMPLE_RATE
from asc_utils.data.tau import (
    META_COLUMNS,
    SPLIT_NAMES,
    SPLIT_URL,
    TAU_META_ROWS,
    TAU_TEST_PER_DEVICE,
    TEST_SHA256,
    TRAIN_SPLIT_NAMES,
    DataError,
    add_columns,
    device_counts,
    new_embedded_hint,
    read_table,
    regenerate_hint,
    split_dir,
)
from asc_utils.labels import CLASSES, DEVICES, UNSEEN_DEVICES
from asc_utils.paths import shell_quote

# the "generator" in the data card of an embedded data set (asc_utils.synth.writer; earlier versions: asc_utils.data.synthetic)
GENERATOR_NAMES = ("asc_utils.synth", "asc_utils.data.synthetic")
UNREADABLE = "cannot be read as wav (corrupt, empty or another format)"


def _examples(items, k: int = 3) -> str:
    items = list(items)
    return ", ".join(str(i) for i in items[:k]) + (f" (and {len(items) - k} more)" if len(items) > k else "")


def _check_meta(data_dir: Path, expected_rows: int | None, problems: list[str], notes: list[str]) -> pd.DataFrame | None:
    """Columns, row count and consistency of meta.csv; returns the table with derived columns, or None."""
    path = data_dir / "meta.csv"
    try:
        raw = read_table(path)
    except Exception as exc:  # pandas raises several parser errors
        problems.append(f"meta.csv could not be parsed ({exc}). Expected a tab-separated file; re-extract it from the meta archive.")
        return None
    if list(raw.columns) != list(META_COLUMNS):
        missing = [c for c in META_COLUMNS if c not in raw.columns]
        if missing:
            problems.append(f"meta.csv columns are {list(raw.columns)}; expected {list(META_COLUMNS)} (tab-separated). "
                            "Use the original file; a copy re-saved with commas or without header will not work.")
            return None
        notes.append(f"meta.csv has extra or reordered columns {list(raw.columns)}; only {list(META_COLUMNS)} are used.")
    if expected_rows is not None and len(raw) != expected_rows:
        problems.append(f"meta.csv has {len(raw):,} rows; expected {expected_rows:,}. The file is truncated or from another "
                        "release: re-extract (TAU22 development) or regenerate (embedded data set) the folder.")
    try:
        meta = add_columns(raw)
    except DataError as exc:
        problems.append(f"meta.csv: {exc}")
        return None
    bad_device = meta["source_label"] != meta["device"]
    if bad_device.any():
        problems.append(f"{int(bad_device.sum())} meta rows have a source_label that differs from the device in the file "
                        f"name (e.g. {_examples(meta.loc[bad_device, 'filename'])}). Expected them to agree; re-extract meta.csv.")
    bad_id = meta["identifier"] != meta["location"]
    if bad_id.any():
        problems.append(f"{int(bad_id.sum())} meta rows have an identifier that differs from <city>-<location> in the "
                        f"file name (e.g. {_examples(meta.loc[bad_id, 'filename'])}). Re-extract meta.csv.")
    unknown = sorted(set(meta["device"]) - set(DEVICES))
    if unknown:
        notes.append(f"meta.csv lists devices outside a, b, c, s1..s6: {unknown}; they are kept but not evaluated per device.")
    if meta["filename"].duplicated().any():
        problems.append(f"meta.csv lists some files twice (e.g. {_examples(meta.loc[meta['filename'].duplicated(), 'filename'])}).")
    return meta


def _check_audio(data_dir: Path, meta: pd.DataFrame, fix: str, problems: list[str], notes: list[str],
                 files: dict[str, tuple[str, ...]], progress: bool) -> None:
    """Every listed file present; every present file's header read (rate, channels, length; no decoding)."""
    import soundfile as sf

    audio = data_dir / "audio"
    present = {f"audio/{name}" for name in os.listdir(audio)} if audio.is_dir() else set()
    missing = [f for f in meta["filename"] if f not in present]
    if missing:
        problems.append(f"{len(missing):,} of {len(meta):,} audio files listed in meta.csv are missing from audio/ "
                        f"(e.g. {_examples(missing)}). {fix}")
    extra = len(present) - (len(meta) - len(missing))
    if extra > 0:
        notes.append(f"audio/ holds {extra:,} files that meta.csv does not list; they are ignored.")
    listed = [f for f in meta["filename"] if f in present]
    unreadable: list[str] = []
    formats: dict[tuple[int, int, int], list[str]] = {}
    for name in tqdm(listed, desc="checking audio", unit="file", disable=not progress):
        try:
            info = sf.info(str(data_dir / name))
        except Exception:  # soundfile raises LibsndfileError / RuntimeError / OSError for what it cannot open
            unreadable.append(name)
            continue
        found = (int(info.samplerate), int(info.channels), int(info.frames))
        if found != (SAMPLE_RATE, 1, CLIP_SAMPLES):
            formats.setdefault(found, []).append(name)
    if unreadable:
        files[UNREADABLE] = tuple(unreadable)
        problems.append(f"{len(unreadable):,} audio file(s) {UNREADABLE}: {_examples(unreadable, 5)}"
                        f"{' (all listed below)' if len(unreadable) > 5 else ''}. Expected 1 s wav clips. {fix}")
    for (rate, channels, frames), names in sorted(formats.items(), key=lambda item: -len(item[1])):
        what = f"{rate:,} Hz, {channels} channel(s), {frames:,} samples"
        files[what] = tuple(names)
        if rate == SAMPLE_RATE and channels == 1 and frames < CLIP_SAMPLES:
            cause = "shorter than 1 s: truncated (an interrupted copy or extraction)"
        else:
            cause = ("the loader would resample, mix or crop/pad them, but a TAU22 folder should not need that: the files "
                     "were converted")
        problems.append(f"{len(names):,} audio file(s) are {what}: {_examples(names, 5)}"
                        f"{' (all listed below)' if len(names) > 5 else ''}. Expected {SAMPLE_RATE:,} Hz mono with "
                        f"{CLIP_SAMPLES:,} samples; {cause}. {fix}")
    notes.append(f"opened all {len(listed):,} audio files (header: rate, channels, length)")


def _check_splits(data_dir: Path, meta: pd.DataFrame | None, card: dict | None, problems: list[str], notes: list[str]) -> None:
    """Split files present, known to meta, nested, test counts per device as expected, s4..s6 test-only, locations disjoint."""
    from asc_utils.download import sha256_of

    folder = split_dir(data_dir)
    tables: dict[str, pd.DataFrame] = {}
    to_download: list[str] = []
    for name in SPLIT_NAMES:
        path = folder / f"{name}.csv"
        if not path.exists():
            if card is not None and card.get("real_subset"):
                problems.append(f"split_setup/{name}.csv is missing from the fetched TAU22 subset; write it again with "
                                f"`asc data fetch --dest {shell_quote(data_dir)} --subset {card['subset']}` (it keeps the clips it has).")
            elif card is not None:
                problems.append(f"split_setup/{name}.csv is missing from the embedded data set. {regenerate_hint(data_dir, card)}")
            else:
                to_download.append(name)
            continue
        table = read_table(path)
        if "filename" not in table.columns:
            problems.append(f"'{path}' has columns {list(table.columns)}; expected tab-separated filename, scene_label.")
            continue
        if name == "test" and card is None and sha256_of(path) != TEST_SHA256:
            problems.append(f"'{path}' is not the official TAU22 test split (sha256 differs from {TEST_SHA256}). "
                            "Delete it; it is downloaded again on first use.")
        if meta is not None:
            unknown = sorted(set(table["filename"]) - set(meta["filename"]))
            if unknown:
                problems.append(f"{len(unknown):,} files of {name}.csv are not in meta.csv (e.g. {_examples(unknown)}); "
                                "the split file and meta.csv belong to different data sets.")
                continue
        tables[name] = add_columns(table.assign(scene_label=table.get("scene_label", CLASSES[0])))
    if to_download:  # the real TAU22 release does not ship the split files: not a problem
        names = ", ".join(f"{n}.csv" for n in to_download)
        where = "split_setup/ is not there yet" if not folder.exists() else f"{names} not in '{folder}' yet"
        notes.append(f"{where}: the split files are downloaded on first use (from {SPLIT_URL.format(name='<name>.csv')}, "
                     f"needs internet; sha256/nesting verified), or put them into '{folder}' by hand")
    present = [n for n in TRAIN_SPLIT_NAMES if n in tables]
    for small, big in zip(present, present[1:]):
        if not set(tables[small]["filename"]) <= set(tables[big]["filename"]):
            problems.append(f"{small}.csv is not contained in {big}.csv; expected nested subsets 5 in 10 in 25 in 50 in 100.")
    for name in present:
        leaked = sorted(set(tables[name]["device"]) & set(UNSEEN_DEVICES))
        if leaked:
            problems.append(f"{name}.csv contains clips of {leaked}; expected s4..s6 only in the test split.")
    if "test" in tables:
        found = device_counts(tables["test"])
        expected = TAU_TEST_PER_DEVICE if card is None else card["splits"]["test"]["per_device"]
        if found != expected:
            diff = {d: (found.get(d, 0), expected.get(d, 0)) for d in DEVICES if found.get(d, 0) != expected.get(d, 0)}
            problems.append("test split clips per device (found, expected): "
                            + ", ".join(f"{d} {f:,}/{e:,}" for d, (f, e) in diff.items())
                            + ". The test split file is incomplete or from another release.")
        else:
            notes.append("test split per device: " + ", ".join(f"{d} {n:,}" for d, n in found.items()))
        if "split100" in tables:
            shared = set(tables["test"]["location"]) & set(tables["split100"]["location"])
            if shared:
                problems.append(f"{len(shared)} locations appear in both split100 and test (e.g. {_examples(sorted(shared))}); "
                                "expected disjoint training and test locations.")


def _read_card(data_dir: Path, problems: list[str]) -> dict | None:
    """The data card of an embedded data set or of a real TAU22 subset from `asc data fetch` (None for other folders);
    an unreadable card is a problem."""
    path = data_dir / "data_card.json"
    if not path.exists():
        return None
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        problems.append(f"'{path}' cannot be read ({exc}). Expected the data card that `asc data synth` or `asc data fetch` "
                        f"writes. For a data set you generated, generate it again into a new folder ({new_embedded_hint(data_dir)}); "
                        "for a TAU22 folder, move the file out of the folder (it is not part of the release).")
        return None
    return card if isinstance(card, dict) and (card.get("synthetic") or card.get("real_subset")) else None


@dataclass(frozen=True)
class DataCheck:
    """What `check_data_dir` found: the folder, its problems (each says what is wrong and what to do) and notes."""

    data_dir: Path
    exists: bool  # False: the path is not a folder (then problems holds that one finding)
    embedded: bool  # the folder carries an embedded data set's data card
    problems: tuple[str, ...]
    notes: tuple[str, ...]  # what was checked and found in order, and harmless oddities
    files: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # every audio file with a problem, by kind of problem

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems


def check_data_dir(data_dir: str | os.PathLike, progress: bool = True) -> DataCheck:
    """Check a TAU22-layout data folder (real or embedded) and return a `DataCheck`; findings are returned, not raised.

    The one data-folder check of the project: `asc data check` prints every problem and note of it, `asc check` prints
    one line from it. `result.ok` is True when `result.problems` is empty. Checked: the folder, meta.csv (columns, row
    count, consistency), the audio files (all present; every file's header: rate, channels, length, with a progress
    bar) and the split files (present, known to meta.csv, nested, test clips per device, s4..s6 test-only, disjoint
    train and test locations). Split files missing from a real TAU22 folder are a note: they are downloaded on first use.
    """
    data_dir = Path(data_dir).expanduser()
    problems: list[str] = []
    notes: list[str] = []
    files: dict[str, tuple[str, ...]] = {}
    expected = ("Expected an extracted TAU22 development folder (audio/, meta.csv), a folder from `asc data fetch` or an "
                "embedded data set")
    if data_dir.exists() and not data_dir.is_dir():
        problems.append(f"'{data_dir}' is a file, not a folder. {expected}; point it at the folder that holds meta.csv and audio/.")
        return DataCheck(data_dir, False, False, tuple(problems), tuple(notes))
    if not data_dir.is_dir():
        problems.append(f"'{data_dir}' does not exist. {expected}: check the path, or generate the embedded data set "
                        f"({new_embedded_hint(data_dir)}).")
        return DataCheck(data_dir, False, False, tuple(problems), tuple(notes))
    card = _read_card(data_dir, problems)
    ours = bool(card and card.get("synthetic") and card.get("generator") in GENERATOR_NAMES)
    if not (data_dir / "meta.csv").exists():
        if ours:
            problems.append(f"'{data_dir}' has no meta.csv: the embedded data set there is unfinished (its generation was "
                            f"interrupted). {regenerate_hint(data_dir, card)}")
        else:
            problems.append(f"'{data_dir}' has no meta.csv. For TAU22, extract the meta archive (meta.csv) into it. For the "
                            f"embedded data set, generate it into a new folder ({new_embedded_hint(data_dir)}) and point "
                            "--data-dir / DATA_DIR / $ASC_DATA_DIR there.")
    if not (data_dir / "audio").is_dir():
        problems.append(f"'{data_dir}' has no audio/ folder. " + (regenerate_hint(data_dir, card) if ours else
                        f"Extract all TAU22 audio archives into '{data_dir}' (they unpack into audio/)."))
    embedded = bool(card and card.get("synthetic"))
    if problems:
        return DataCheck(data_dir, True, embedded, tuple(problems), tuple(notes))
    if card and card.get("real_subset"):  # real TAU22 clips, restricted meta and split files: counts come from the card
        notes.append(f"real TAU22 subset '{card['subset']}' (asc data fetch, seed {card['seed']}): counts checked against its data card")
        fix = (f"Fetch the missing or damaged clips again: `asc data fetch --dest {shell_quote(data_dir)} --subset {card['subset']}` "
               "(it keeps the clips that match their CRC-32).")
    elif card:
        preset = card.get("preset") if isinstance(card.get("preset"), dict) else {}
        notes.append(f"embedded (synthetic) data set, preset {preset.get('name', '?')}, seed {card.get('seed', '?')}")
        fix = regenerate_hint(data_dir, card) if ours else f"Generate the data set again into a new folder ({new_embedded_hint(data_dir)})."
    else:
        notes.append("no data card: checked as the real TAU22 development set")
        fix = (f"Extract the TAU22 audio archives into '{data_dir}' (they unpack into audio/; extracting an archive again "
               "replaces its damaged files).")
    meta = _check_meta(data_dir, card.get("meta_rows") if card else TAU_META_ROWS, problems, notes)
    if meta is not None:
        _check_audio(data_dir, meta, fix, problems, notes, files, progress)
    _check_splits(data_dir, meta, card, problems, notes)
    return DataCheck(data_dir, True, embedded, tuple(problems), tuple(notes), files)
