"""The embedded data set: TAU22 layout, device setup, determinism, presets, device responses and `asc data check`."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from asc_utils.cli import main
from asc_utils.data import load_meta, load_split
from asc_utils.labels import CITIES, CLASSES, DEVICES, TRAIN_DEVICES, UNSEEN_DEVICES
from asc_utils.responses import DEVICE_FAMILY_SEED, mic_like_magnitude_db, mic_like_response
from asc_utils.synth import writer as syn
from asc_utils.synth.devices import DEVICE_SPECS, device_response

NAME = re.compile(r"^audio/([a-z_]+)-([a-z]+)-(\d+)-(\d+)-(\d+)-(a|b|c|s[1-6])\.wav$")


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and ".cache" not in p.parts}


def test_layout(tiny_data):
    raw = (tiny_data / "meta.csv").read_bytes()
    assert raw.startswith(b"filename\tscene_label\tidentifier\tsource_label\r\n")
    meta = load_meta(tiny_data)
    assert all(NAME.match(f) for f in meta["filename"])
    assert (meta["identifier"] == meta["location"]).all() and (meta["source_label"] == meta["device"]).all()
    assert set(meta["city"]) <= set(CITIES) and set(meta["scene_label"]) == set(CLASSES)
    files = sorted(p.name for p in (tiny_data / "audio").iterdir())
    assert files == sorted(f[len("audio/"):] for f in meta["filename"])
    info = sf.info(str(tiny_data / meta["filename"].iloc[0]))
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (44_100, 1, 44_100, "PCM_24")
    for name in ("split5", "split10", "split25", "split50", "split100", "test"):
        assert (tiny_data / "split_setup" / f"{name}.csv").read_bytes().startswith(b"filename\tscene_label\r\n")
    card = json.loads((tiny_data / "data_card.json").read_text())
    assert card["synthetic"] is True and card["seed"] == 0 and card["generator_version"] == syn.GENERATOR_VERSION
    assert card["meta_rows"] == len(meta)
    assert "synthetic" in (tiny_data / "DATA_CARD.md").read_text()


def test_device_setup_and_splits(tiny_data):
    splits = {name: load_split(tiny_data, name) for name in ("split5", "split10", "split25", "split50", "split100", "test")}
    train, test = splits["split100"], splits["test"]
    for small, big in zip(list(splits)[:4], list(splits)[1:5]):
        assert set(splits[small]["filename"]) < set(splits[big]["filename"])
    assert set(train["device"]) == set(TRAIN_DEVICES) and set(test["device"]) == set(DEVICES)
    assert not set(train["device"]) & set(UNSEEN_DEVICES)
    counts = train["device"].value_counts()
    assert counts["a"] > counts.drop("a").max()  # device a dominates training
    assert not set(train["location"]) & set(test["location"])  # disjoint locations
    assert set(train["scene_label"]) == set(test["scene_label"]) == set(CLASSES)
    # parallel recordings: every test recording exists once per device
    recordings = test["filename"].str.replace(r"-[^-]+\.wav$", "", regex=True)
    assert (recordings.value_counts() == len(DEVICES)).all()


def test_same_seed_identical_files(tiny_data, tmp_path):
    again = syn.synthesize(tmp_path / "again", preset="tiny", seed=0, progress=False)
    assert _digest(again) == _digest(tiny_data)


def test_other_seed_differs_and_overwrite_guard(tiny_data, tmp_path):
    a, b = syn.plan(syn.PRESETS["tiny"], 0), syn.plan(syn.PRESETS["tiny"], 1)
    assert [r.location for r in a] != [r.location for r in b]
    with pytest.raises(FileExistsError, match="overwrite"):
        syn.synthesize(tiny_data, preset="tiny", seed=0)
    with pytest.raises(ValueError, match="tiny, tutorial, tau25"):
        syn.synthesize(tmp_path / "x", preset="huge")


def test_tau25_plan_matches_tau22_counts():
    """The tau25 preset (not rendered here) has split25-sized training and exactly the TAU22 test counts."""
    recordings = syn.plan(syn.PRESETS["tau25"], 0)
    splits = syn._splits(recordings, 0)
    test = pd.DataFrame(splits["test"], columns=["filename", "scene_label"])
    fields = test["filename"].str.extract(NAME)
    assert len(test) == 29_680
    assert fields[5].value_counts().to_dict() == {"a": 3300, "b": 3290, "c": 3290, **{f"s{i}": 3300 for i in range(1, 7)}}
    assert test["scene_label"].value_counts().to_dict() == {c: 2960 if c in ("airport", "tram") else 2970 for c in CLASSES}
    assert fields[1].value_counts().to_dict() == {c: {"barcelona": 3580, "helsinki": 3600, "lisbon": 3600}.get(c, 2700) for c in CITIES}
    assert 33_000 <= len(splits["split100"]) <= 37_000


def test_tutorial_plan_sizes_and_disjoint_locations():
    """The tutorial preset (not rendered here): the sizes its data card promises, 5 s test recordings, disjoint locations."""
    recordings = syn.plan(syn.PRESETS["tutorial"], 0)
    splits = syn._splits(recordings, 0)
    assert {name: len(rows) for name, rows in splits.items()} == {
        "split5": 250, "split10": 450, "split25": 1150, "split50": 2250, "split100": 4500, "test": 2700}
    fields = pd.DataFrame(splits["test"], columns=["filename", "scene_label"])["filename"].str.extract(NAME)
    assert fields[5].value_counts().to_dict() == {d: 300 for d in DEVICES}
    assert set(fields[4].astype(int)) == set(range(5))  # 5 s test recordings: clips 0..4
    assert {r.clips for r in recordings if not r.test} == {10}
    places = {test: {(r.city, r.location) for r in recordings if r.test == test} for test in (True, False)}
    assert places[True] and not places[True] & places[False]
    assert len({(r.scene, r.city, r.location) for r in recordings if r.test}) == 60  # six test locations per class


def test_scene_signatures_fixed_and_distinct():
    """Every scene has its own spectral signature, independent of the data set's seed and drawn again identically."""
    from asc_utils.synth.scenes import SCENES, SIGNATURE_DB, scene_signature

    signatures = {scene: scene_signature(scene) for scene in SCENES}
    assert signatures == {scene: scene_signature(scene) for scene in SCENES}
    assert len({tuple(sig) for sig in signatures.values()}) == len(SCENES)
    assert all(0.5 * SIGNATURE_DB <= abs(gain) <= SIGNATURE_DB for sig in signatures.values() for _, gain, _ in sig)


def test_device_family():
    responses = {d: device_response(d) for d in DEVICES}
    band = slice(19, 1858)  # rfft bins of 8192 points: 100 Hz .. 10 kHz
    for d, ir in responses.items():
        assert ir.dtype == np.float32 and abs(float(np.sum(ir.astype(np.float64) ** 2)) - 1.0) < 1e-3
        spread = np.ptp(20 * np.log10(np.abs(np.fft.rfft(ir, 8192))[band]))
        assert spread < 4.0 if d == "a" else spread > 5.0, f"device {d}: {spread:.1f} dB spread"  # a near-flat, others not
    flat_db = mic_like_magnitude_db(np.random.default_rng([DEVICE_FAMILY_SEED, 0]), np.geomspace(100, 10_000, 50), 0.0)
    assert np.ptp(flat_db) < 1.0  # strength 0 is the flat member of the family
    train_strength = max(DEVICE_SPECS[d].strength for d in TRAIN_DEVICES)
    assert all(DEVICE_SPECS[d].strength > train_strength for d in UNSEEN_DEVICES)  # unseen devices: the strongest colourings
    flat = np.stack(list(responses.values()))
    assert np.linalg.matrix_rank(flat) == len(DEVICES)  # distinct instances
    other = mic_like_response(np.random.default_rng(12345))
    assert not any(np.allclose(other, ir) for ir in responses.values())


def test_cli_synth_and_check(tiny_data, tmp_path, capsys):
    assert main(["data", "check", "--data-dir", str(tiny_data)]) == 0
    assert "All checks passed" in capsys.readouterr().out
    broken = tmp_path / "broken"
    shutil.copytree(tiny_data, broken, ignore=shutil.ignore_patterns(".cache"))
    victim = sorted((broken / "audio").iterdir())[0]
    victim.unlink()
    (broken / "split_setup" / "test.csv").write_text("filename\tscene_label\n")
    assert main(["data", "check", "--data-dir", str(broken)]) == 1
    out = capsys.readouterr().out
    assert victim.name in out and "asc data synth --overwrite" in out and "per device" in out
    assert main(["data", "synth", "--preset", "tiny", "--out", str(tiny_data)]) == 2
    assert "--overwrite" in capsys.readouterr().err
