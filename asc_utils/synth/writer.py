"""Writing the embedded data set: presets, the plan of recordings, rendering in worker processes, tables and data card.

`synthesize(out_dir, preset, seed)` plans locations and recordings (10 s; the tutorial preset's test recordings 5 s)
per scene and city, renders every recording through each device that captured it (a near-flat; b, c real-device-like;
s1..s6 simulated from a), cuts it into 1 s clips and writes audio/, meta.csv, split_setup/ and a data card.
Same preset and seed -> byte-identical files.
"""

from __future__ import annotations

import io
import json
import multiprocessing as mp
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from asc_utils.audio import SAMPLE_RATE
from asc_utils.errors import UserError
from asc_utils.labels import CITIES, CLASSES, DEVICES, TRAIN_DEVICES
from asc_utils.paths import shell_quote
from asc_utils.synth.devices import DEVICE_SPECS, render_devices
from asc_utils.synth.scenes import city_traits, location_params, render_recording

GENERATOR_VERSION = "1.1"
GENERATOR_NAME = "asc_utils.synth"  # the data card's "generator": marks a folder this generator wrote
_GENERATOR_NAMES = (GENERATOR_NAME, "asc_utils.data.synthetic")  # and the name under which earlier versions wrote it
TRAIN_SPLITS = (5, 10, 25, 50, 100)
SPLIT_FILES = tuple(f"split{p}.csv" for p in TRAIN_SPLITS) + ("test.csv",)
_OWNED = ("audio", "split_setup", "meta.csv", "DATA_CARD.md", "data_card.json")  # names a data set of ours occupies
_CARD_FILES = ("meta.csv", "DATA_CARD.md", "data_card.json")
_CLIP_FILE = re.compile(r"^[a-z_]+-[a-z]+-\d+-\d+-\d+-(?:a|b|c|s[1-6])\.wav$")  # the clips `_render` writes into audio/
# the arrays asc_utils.data.cache keeps in .cache/ (and its temporaries): derived from the generated files, so replaced with them
_CACHE_FILE = re.compile(r"^\.?(?:split(?:5|10|25|50|100)|test)-[0-9a-f]{16}(?:\.[A-Za-z0-9-]+)?\.npy$")
OVERWRITE_DELETES = ("the generated files there: the clips in audio/, meta.csv, the split files in split_setup/, the data card "
                     "(data_card.json, DATA_CARD.md) and the cached arrays in .cache/; nothing else")


class UnknownPresetError(UserError, ValueError):
    """`synthesize` was asked for a preset that does not exist."""


class DataSetExistsError(UserError, FileExistsError):
    """The output folder already holds a data set and overwriting was not asked for."""


@dataclass(frozen=True)
class Preset:
    """Size of a generated data set (recordings of `clips_per_recording` s, test ones of `test_clips` s, cut into 1 s clips)."""

    name: str
    train_per_class: int  # training recordings per class, all captured by device a
    other_per_device: int  # of those, how many each other training device (b, c, s1..s3) also captured
    test_per_class: int  # test recordings per class, each captured by all nine devices
    train_per_location: int  # training recordings per location (test: one location per class and city)
    clips_per_recording: int = 10
    test_clips_per_recording: int | None = None  # clips kept per test recording (None: clips_per_recording); fewer clips
    # from more test locations give steadier per-device accuracies for the same number of test clips
    tau_test_layout: bool = False  # test split with the exact TAU22 counts per device, class and city

    @property
    def test_clips(self) -> int:
        """1 s clips per test recording."""
        return self.test_clips_per_recording or self.clips_per_recording


PRESETS: dict[str, Preset] = {
    "tiny": Preset("tiny", train_per_class=3, other_per_device=3, test_per_class=1, train_per_location=1, clips_per_recording=2),
    "tutorial": Preset("tutorial", train_per_class=30, other_per_device=30, test_per_class=6, train_per_location=1,
                       test_clips_per_recording=5),
    "tau25": Preset("tau25", train_per_class=255, other_per_device=187, test_per_class=33, train_per_location=5, tau_test_layout=True),
}


@dataclass
class _Recording:
    index: int
    scene: str
    city: str
    location: int
    segment: int
    devices: tuple[str, ...]
    test: bool
    params: dict
    clips: int  # 1 s clips cut from this recording


def _test_cities(preset: Preset, rng: np.random.Generator, class_index: int) -> list[str]:
    """Cities of the test recordings of one class (the TAU22 layout: 4 in barcelona, helsinki, lisbon, else 3)."""
    if preset.tau_test_layout:
        return [c for c in CITIES for _ in range(4 if c in ("barcelona", "helsinki", "lisbon") else 3)]
    order = list(rng.permutation(CITIES))
    shift = class_index % len(order)
    order = order[shift:] + order[:shift]
    return [order[i % len(order)] for i in range(preset.test_per_class)]


def plan(preset: Preset, seed: int) -> list[_Recording]:
    """Plan every recording: scene, city, location, segment number, the devices that captured it, and its parameters."""
    rng = np.random.default_rng([seed, 1])
    cities = {c: city_traits(seed, i) for i, c in enumerate(CITIES)}
    locations: list[tuple[str, str, bool, int]] = []  # (scene, city, test, number of recordings)
    for k, scene in enumerate(CLASSES):
        for city in _test_cities(preset, rng, k):
            if locations and locations[-1][:3] == (scene, city, True):
                locations[-1] = (scene, city, True, locations[-1][3] + 1)
            else:
                locations.append((scene, city, True, 1))
        remaining, order = preset.train_per_class, list(rng.permutation(CITIES))
        for i in range(int(np.ceil(preset.train_per_class / preset.train_per_location))):
            count = min(preset.train_per_location, remaining)
            locations.append((scene, order[i % len(order)], False, count))
            remaining -= count
    ids: dict[str, list[int]] = {}
    for city in CITIES:
        needed = sum(1 for loc in locations if loc[1] == city)
        ids[city] = sorted(int(i) for i in rng.choice(np.arange(100, 1400), needed, replace=False))
    recordings: list[_Recording] = []
    for li, (scene, city, test, count) in enumerate(locations):
        location = ids[city].pop(int(rng.integers(len(ids[city]))))
        params = location_params(np.random.default_rng([seed, 2, li]), scene, cities[city])
        base = int(rng.integers(1000, 50_000))
        for r in range(count):
            devices = DEVICES if test else ("a",)
            clips = preset.test_clips if test else preset.clips_per_recording
            recordings.append(_Recording(len(recordings), scene, city, location, base + r * 2, devices, test, params, clips))
    _assign_other_devices(preset, rng, recordings)
    return recordings


def _assign_other_devices(preset: Preset, rng: np.random.Generator, recordings: list[_Recording]) -> None:
    """Let b, c, s1..s3 capture class-balanced subsets of the training recordings; apply the TAU22 test gaps."""
    by_class = {scene: [r for r in recordings if r.scene == scene and not r.test] for scene in CLASSES}
    for device in TRAIN_DEVICES[1:]:
        classes = list(rng.permutation(CLASSES))
        chosen: set[int] = set()
        for i in range(preset.other_per_device):
            pool = [r for r in by_class[classes[i % len(classes)]] if r.index not in chosen]
            if pool:
                pick = pool[int(rng.integers(len(pool)))]
                chosen.add(pick.index)
                pick.devices = pick.devices + (device,)
    if preset.tau_test_layout:  # TAU22's test split lacks one b recording (airport) and one c recording (tram), both in barcelona
        for scene, device in (("airport", "b"), ("tram", "c")):
            r = next(r for r in recordings if r.test and r.scene == scene and r.city == "barcelona")
            r.devices = tuple(d for d in r.devices if d != device)


def clip_name(r: _Recording, sub: int, device: str) -> str:
    """The TAU22 file name of one clip: audio/<scene>-<city>-<location>-<segment>-<sub>-<device>.wav."""
    return f"audio/{r.scene}-{r.city}-{r.location}-{r.segment}-{sub}-{device}.wav"


def _write_clip(path: Path, wave: np.ndarray) -> None:
    """Write one 24-bit clip; encoded in memory first (soundfile syncs real files to disk on close, which is slow)."""
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(wave, -1.0, 1.0).astype(np.float32), SAMPLE_RATE, subtype="PCM_24", format="WAV")
    path.write_bytes(buffer.getvalue())


def _render(job: tuple[_Recording, int, str]) -> int:
    """Render one recording through its devices and write its clips (runs in a worker process)."""
    r, seed, out = job
    scene = render_recording(r.params, np.random.default_rng([seed, 3, r.index]), seconds=r.clips)
    rngs = {d: np.random.default_rng([seed, 4, r.index, i]) for i, d in enumerate(DEVICES)}
    for device, wave in render_devices(scene, r.devices, rngs).items():
        for sub in range(r.clips):
            _write_clip(Path(out) / clip_name(r, sub, device), wave[sub * SAMPLE_RATE : (sub + 1) * SAMPLE_RATE])
    return len(r.devices) * r.clips


def _write_table(path: Path, header: list[str], rows: list[tuple]) -> None:
    """Write a tab-separated table with CRLF line ends, as TAU22 ships them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(header)] + ["\t".join(str(v) for v in row) for row in rows]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8"))


def _splits(recordings: list[_Recording], seed: int) -> dict[str, list[tuple[str, str]]]:
    """Nested training splits (stratified by device, whole recordings) and the test split."""
    rng = np.random.default_rng([seed, 5])
    out: dict[str, list[tuple[str, str]]] = {f"split{p}": [] for p in TRAIN_SPLITS}
    for device in TRAIN_DEVICES:
        units = [r for r in recordings if not r.test and device in r.devices]
        units = [units[i] for i in rng.permutation(len(units))]
        seen: dict[str, int] = {}
        rank = [seen.__setitem__(r.scene, seen.get(r.scene, 0) + 1) or seen[r.scene] for r in units]
        units = [units[i] for i in sorted(range(len(units)), key=lambda i: (rank[i], i))]  # interleave the classes
        for p in TRAIN_SPLITS:
            take = units[: max(1, int(round(len(units) * p / 100)))] if units else []
            out[f"split{p}"] += [(clip_name(r, s, device), r.scene) for r in take for s in range(r.clips)]
    out["test"] = [(clip_name(r, s, d), r.scene) for r in recordings if r.test for d in DEVICES if d in r.devices for s in range(r.clips)]
    return {name: sorted(rows) for name, rows in out.items()}


def _counts(rows: list[tuple[str, str]]) -> dict:
    devices = [name.rsplit("-", 1)[1][:-4] for name, _ in rows]
    return {
        "clips": len(rows),
        "per_device": {d: devices.count(d) for d in DEVICES if d in devices},
        "per_class": {c: sum(1 for _, s in rows if s == c) for c in CLASSES},
    }


def _write_card(out: Path, preset: Preset, seed: int, meta_rows: list[tuple], splits: dict) -> None:
    """Write data_card.json and DATA_CARD.md (no time stamps, so identical runs give identical files)."""
    card = {
        "name": f"embedded TAU22-layout data set ({preset.name})",
        "synthetic": True,
        "statement": "All audio here is synthetic: generated procedurally by asc_utils.synth. It has the layout and "
        "device setup of TAU Urban Acoustic Scenes 2022 Mobile but contains no recorded sound; results on it are not TAU22 results.",
        "generator": GENERATOR_NAME,
        "generator_version": GENERATOR_VERSION,
        "preset": asdict(preset),
        "seed": seed,
        "sample_rate": SAMPLE_RATE,
        "clip_seconds": 1,
        "recording_seconds": preset.clips_per_recording,
        "test_recording_seconds": preset.test_clips,
        "meta_rows": len(meta_rows),
        "splits": {name: _counts(rows) for name, rows in splits.items()},
        "devices": {name: asdict(spec) for name, spec in DEVICE_SPECS.items()},
    }
    (out / "data_card.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    lines = [
        f"# Data card: {card['name']}",
        "",
        f"**{card['statement']}**",
        "",
        f"- Generator: `{card['generator']}` version {GENERATOR_VERSION}, preset `{preset.name}`, seed {seed}.",
        f"- Regenerate: `asc data synth --preset {preset.name} --seed {seed} --out <folder>` (identical files).",
        f"- {len(meta_rows)} clips of 1 s, 44.1 kHz, mono, 24-bit PCM, cut from {preset.clips_per_recording} s recordings"
        + (f" ({preset.test_clips} s for test recordings)." if preset.test_clips != preset.clips_per_recording else "."),
        "- Layout as TAU22: `audio/<scene>-<city>-<location>-<segment>-<sub>-<device>.wav`, `meta.csv`,",
        "  `split_setup/split{5,10,25,50,100}.csv` (nested training subsets) and `split_setup/test.csv`.",
        "- Scenes: procedural sources with scene-typical statistics, varied per city, location and recording, plus a",
        "  broad spectral signature per scene; tuned so that the tutorial's own training shows TAU22's device mismatch.",
        "- Devices: `a` near-flat reference; `b`, `c` real-device-like (band limits, resonances, noise floor, gain,",
        "  compression); `s1`..`s6` simulated from `a` with their own impulse responses, noise and gain.",
        "  `s4`..`s6` (the strongest colourings) appear only in the test split. Train and test locations are disjoint.",
        "- Differences from TAU22: far fewer locations and recordings; every test recording is captured by all",
        "  devices (parallel), so per-device test results compare the same sounds.",
        "",
        "| split | clips | " + " | ".join(DEVICES) + " |",
        "|---|---|" + "---|" * len(DEVICES),
    ]
    for name, c in card["splits"].items():
        lines.append(f"| {name} | {c['clips']} | " + " | ".join(str(c["per_device"].get(d, 0)) for d in DEVICES) + " |")
    (out / "DATA_CARD.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_card(folder: str | os.PathLike) -> dict | None:
    """The data card of a data set this generator wrote (data_card.json, "synthetic": true, its generator name), else None."""
    path = Path(folder) / "data_card.json"
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(card, dict) and card.get("synthetic") is True and card.get("generator") in _GENERATOR_NAMES:
        return card
    return None


def _contents(out: Path, names: list[str]) -> str:
    """What a folder holds under the given names, for messages: 'audio/ (1,234 entries), meta.csv'."""
    parts = []
    for name in names:
        path = out / name
        if path.is_dir():
            with os.scandir(path) as entries:
                count = sum(1 for _ in entries)
                parts.append(f"{name}/ ({count:,} {'entry' if count == 1 else 'entries'})")
        else:
            parts.append(name)
    return ", ".join(parts)


def _foreign_card(out: Path) -> str:
    """Describe the data card of a folder this generator did not write."""
    path = out / "data_card.json"
    if not path.exists():
        return "no data card of this generator (data_card.json)"
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "a data_card.json that cannot be read"
    if isinstance(card, dict) and card.get("real_subset"):
        return f"a data card of real TAU22 clips (`asc data fetch`, subset '{card.get('subset')}')"
    return f"a data_card.json that this generator did not write (it lacks \"synthetic\": true and \"generator\": \"{GENERATOR_NAME}\")"


def _new_folder_hint(out: Path, preset: str) -> str:
    """A command that generates into a new folder instead of out."""
    suggestion = Path("data") / preset
    if out.resolve() == suggestion.resolve():
        suggestion = out.with_name(out.name + "-new")
    return f"`asc data synth --preset {preset} --out {shell_quote(suggestion)}`"


def _remove_generated(out: Path) -> None:
    """Delete what this generator (and the split cache) wrote into out; other files stay, and so do their folders."""
    (out / "meta.csv").unlink(missing_ok=True)  # first: without it the folder reads as unfinished, never as complete
    for folder, pattern in (("audio", _CLIP_FILE), ("split_setup", None), (".cache", _CACHE_FILE)):
        path = out / folder
        if not path.is_dir():
            continue
        for entry in list(os.scandir(path)):
            ours = entry.name in SPLIT_FILES if pattern is None else bool(pattern.match(entry.name))
            if ours and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
        if not any(path.iterdir()):
            path.rmdir()
    for name in ("DATA_CARD.md", "data_card.json"):  # the card last: an interrupted clean-up can be run again
        (out / name).unlink(missing_ok=True)


def _prepare(out: Path, overwrite: bool, preset: str) -> None:
    """Make out ready: a new or empty folder, or (with overwrite) one that holds a data set this generator wrote.

    Anything else is refused before a single file is touched: --overwrite deletes only what the data card proves to be
    generated, never a TAU22 folder or other files of the user.
    """
    if out.exists() and not out.is_dir():
        raise DataSetExistsError(f"'{out}' is a file; expected a new or empty folder for the generated data set. "
                                 f"Choose another --out, e.g. {_new_folder_hint(out, preset)}.")
    existing = [name for name in _OWNED if (out / name).exists() or (out / name).is_symlink()]
    if not existing:
        return
    card = read_card(out)
    if card is None:
        raise DataSetExistsError(
            f"'{out}' holds {_contents(out, existing)} and {_foreign_card(out)}: it is not a data set that `asc data synth` "
            "wrote. Expected a new or empty folder, or one this generator wrote (only then does --overwrite replace it). "
            f"Nothing was changed. Generate the embedded data set into a new folder instead, e.g. {_new_folder_hint(out, preset)}; "
            f"`asc data check --data-dir {shell_quote(out)}` explains what a TAU22 folder lacks."
        )
    if not overwrite:
        preset_name = card.get("preset", {}).get("name", "?") if isinstance(card.get("preset"), dict) else "?"
        state = "" if (out / "meta.csv").exists() else ", unfinished (its generation was interrupted)"
        raise DataSetExistsError(
            f"'{out}' already holds an embedded data set (preset {preset_name}, seed {card.get('seed')}{state}). Expected a new "
            f"or empty folder. Pass overwrite=True (CLI: --overwrite) to replace it: that deletes {OVERWRITE_DELETES}. "
            "Or choose another --out."
        )
    odd = [name for name in (*_OWNED, ".cache") if (out / name).is_symlink()
           or (out / name).exists() and ((out / name).is_file() != (name in _CARD_FILES))]
    if odd:
        raise DataSetExistsError(
            f"'{out}' has a data card of this generator, but {', '.join(odd)} {'is' if len(odd) == 1 else 'are'} not what it "
            "writes (a link, or a file where it writes a folder or the reverse). Expected the generator's own files; nothing "
            f"was changed. Choose another --out, e.g. {_new_folder_hint(out, preset)}."
        )
    _remove_generated(out)


def synthesize(out_dir: str | os.PathLike, preset: str = "tutorial", seed: int = 0, overwrite: bool = False,
               workers: int | None = None, progress: bool = True) -> Path:
    """Generate the embedded data set (TAU22 layout) into out_dir; presets 'tiny', 'tutorial', 'tau25'.

    out_dir must be new or hold no data set; overwrite=True replaces only a data set this generator wrote (its data card
    says so) and deletes only the generated files; any other folder is refused with DataSetExistsError, untouched.
    """
    if preset not in PRESETS:
        raise UnknownPresetError(f"Unknown preset '{preset}'. Expected one of {', '.join(PRESETS)}.")
    spec, out = PRESETS[preset], Path(out_dir)
    _prepare(out, overwrite, preset)
    recordings = plan(spec, seed)
    meta_rows = sorted(
        (clip_name(r, s, d), r.scene, f"{r.city}-{r.location}", d)
        for r in recordings for d in r.devices for s in range(r.clips)
    )
    splits = _splits(recordings, seed)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    _write_card(out, spec, seed, meta_rows, splits)  # first: it marks the folder as ours, so an interrupted run can be replaced
    jobs = [(r, seed, str(out)) for r in recordings]
    workers = workers or min(os.cpu_count() or 1, 8)
    bar = tqdm(total=sum(len(r.devices) * r.clips for r in recordings), desc=f"synth {preset}",
               unit="clip", disable=not progress)
    if workers <= 1 or len(jobs) < 50:
        for job in jobs:
            bar.update(_render(job))
    else:
        context = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with context.Pool(workers) as pool:
            for done in pool.imap_unordered(_render, jobs, chunksize=4):
                bar.update(done)
    bar.close()
    for name, rows in splits.items():
        _write_table(out / "split_setup" / f"{name}.csv", ["filename", "scene_label"], rows)
    _write_table(out / "meta.csv", ["filename", "scene_label", "identifier", "source_label"], meta_rows)  # last: marks completion
    return out
