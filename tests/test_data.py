"""The TAU22 data layer: meta/split parsing (on the real test split file), bad inputs, split download, Dataset, cache."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from asc_utils.audio import AudioReadError
from asc_utils.data import DataError, SplitArrays, TAUDataset, load_meta, load_split, load_split_arrays, parse_filename
from asc_utils.data import cache as cache_module
from asc_utils.data import tau
from asc_utils.labels import CITIES, CLASSES


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    """Each test sees the one-time warnings afresh."""
    monkeypatch.setattr(tau, "_warned", set())


def _tau_folder(root: Path, split_file: Path) -> Path:
    """A TAU22-like folder (meta.csv derived from a split file, split_setup/test.csv linked to it; no audio)."""
    table = pd.read_csv(split_file, sep="\t")
    fields = table["filename"].map(parse_filename)
    meta = table.assign(identifier=[f"{f['city']}-{f['location']}" for f in fields], source_label=[f["device"] for f in fields])
    root.mkdir(parents=True, exist_ok=True)
    meta.to_csv(root / "meta.csv", sep="\t", index=False)
    (root / "split_setup").mkdir()
    os.symlink(split_file, root / "split_setup" / "test.csv")
    return root


def test_parse_filename():
    fields = parse_filename("audio/street_pedestrian-barcelona-203-6129-0-s4.wav")
    assert fields == dict(scene="street_pedestrian", city="barcelona", location="203", segment="6129", sub="0", device="s4")
    with pytest.raises(DataError, match="Unexpected file name"):
        parse_filename("audio/airport-barcelona-203.wav")


def test_real_test_split_counts(shared_dir, tmp_path):
    """The official test split (29,680 rows) parses, joins with meta, and has the documented counts."""
    split_file = shared_dir / "reference" / "tau22_test_split.csv"
    folder = _tau_folder(tmp_path / "tau", split_file)
    test = load_split(folder, "test")
    assert len(test) == 29_680
    assert tau.device_counts(test) == tau.TAU_TEST_PER_DEVICE
    per_class = test["scene_label"].value_counts().to_dict()
    assert per_class == {c: 2960 if c in ("airport", "tram") else 2970 for c in CLASSES}
    per_city = test["city"].value_counts().to_dict()
    assert per_city == {c: {"barcelona": 3580, "helsinki": 3600, "lisbon": 3600}.get(c, 2700) for c in CITIES}
    assert test["label"].dtype == np.int64 and sorted(test["label"].unique()) == list(range(10))
    assert (test["location"] == test["identifier"]).all()
    tau.verify_split_files(folder / "split_setup", ("test",))  # the sha256 in the docs


def test_missing_folder_and_bad_meta(tmp_path):
    with pytest.raises(DataError, match="asc data synth"):
        load_meta(tmp_path / "nowhere")
    (tmp_path / "meta.csv").write_text("filename,scene_label,identifier,source_label\naudio/x.wav,bus,a-1,a\n")
    with pytest.raises(DataError, match="tab-separated"):
        load_meta(tmp_path)
    with pytest.raises(ValueError, match="Unknown split"):
        load_split(tmp_path, "split33")


def _write(path: Path, wave: np.ndarray, sr: int) -> Path:
    sf.write(str(path), wave, sr, subtype="PCM_24")
    return path


def test_load_clip_bad_inputs(tmp_path):
    t = np.arange(44_100) / 44_100
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    with pytest.warns(UserWarning, match="stereo.wav' has 2 channels"):
        mono = tau.load_clip(_write(tmp_path / "stereo.wav", np.stack([tone, -tone], axis=1), 44_100))
    assert np.abs(mono).max() < 1e-4  # the two channels cancel: it was averaged
    with pytest.warns(UserWarning, match="rate22.wav' is sampled at 22050 Hz"):
        resampled = tau.load_clip(_write(tmp_path / "rate22.wav", tone[::2], 22_050))
    assert resampled.shape == (44_100,) and resampled.dtype == np.float32
    assert abs(np.abs(np.fft.rfft(resampled)).argmax() - 440) <= 1  # still a 440 Hz tone
    with pytest.warns(UserWarning, match="short.wav' has 22050 samples; zero-padding"):
        padded = tau.load_clip(_write(tmp_path / "short.wav", tone[:22_050], 44_100))
    assert padded.shape == (44_100,) and not padded[22_050:].any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # second clip with a wrong length: no second warning
        cropped = tau.load_clip(_write(tmp_path / "long.wav", np.tile(tone, 2), 44_100))
    assert cropped.shape == (44_100,)
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00not a wav")
    with pytest.raises(AudioReadError, match="broken.wav"):
        tau.load_clip(tmp_path / "broken.wav")


@pytest.fixture
def split_server(tmp_path, shared_dir, monkeypatch, serve_dir):
    """A local http server (127.0.0.1) serving TAU-like split files; SPLIT_URL points at it."""
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(shared_dir / "reference" / "tau22_test_split.csv", served / "test.csv")
    names = [f"audio/bus-lyon-{i}-100-0-a.wav" for i in range(200)]
    for p in (5, 10, 25, 50, 100):
        pd.DataFrame({"filename": names[: 2 * p], "scene_label": "bus"}).to_csv(served / f"split{p}.csv", sep="\t", index=False)
    monkeypatch.setattr(tau, "SPLIT_URL", f"{serve_dir(served)}/{{name}}")
    return served


def _meta_only(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True)
    fields = [parse_filename(n) for n in names]
    pd.DataFrame({"filename": names, "scene_label": [f["scene"] for f in fields],
                  "identifier": [f"{f['city']}-{f['location']}" for f in fields],
                  "source_label": [f["device"] for f in fields]}).to_csv(folder / "meta.csv", sep="\t", index=False)
    return folder


def test_split_download_and_verification(split_server, tmp_path):
    names = [f"audio/bus-lyon-{i}-100-0-a.wav" for i in range(200)]
    folder = _meta_only(tmp_path / "real", names)
    split = load_split(folder, "split25")  # downloads all five training splits and checks their nesting
    assert len(split) == 50 and (folder / "split_setup" / "split100.csv").exists()
    assert not (folder / "split_setup" / "test.csv").exists()  # only what was asked for
    tau.ensure_split_files(folder, ("test",), progress=False)
    assert (folder / "split_setup" / "test.csv").exists()  # sha256 verified on download

    # split files that are not nested are rejected and not kept
    pd.DataFrame({"filename": names[100:110], "scene_label": "bus"}).to_csv(split_server / "split5.csv", sep="\t", index=False)
    other = _meta_only(tmp_path / "real2", names)
    with pytest.raises(DataError, match="split5.csv is not contained in split10.csv"):
        load_split(other, "split5")
    assert not list((other / "split_setup").glob("*.csv"))


def test_split_download_offline(tmp_path, monkeypatch):
    monkeypatch.setattr(tau, "SPLIT_URL", "http://127.0.0.1:9/{name}")  # discard port: nothing listens
    folder = _meta_only(tmp_path / "offline", ["audio/bus-lyon-1-100-0-a.wav"])
    with pytest.raises(DataError, match="could not be downloaded.*offline"):
        load_split(folder, "test")


def test_embedded_split_missing_is_not_downloaded(tiny_data, tmp_path):
    copy = tmp_path / "tiny"
    shutil.copytree(tiny_data, copy, ignore=shutil.ignore_patterns("audio", ".cache"))
    (copy / "split_setup" / "split10.csv").unlink()
    with pytest.raises(DataError, match="Regenerate it"):
        load_split(copy, "split10")


def test_dataset_items(tiny_data):
    ds = TAUDataset(tiny_data, "test")
    wave, label, device, city, filename = ds[0]
    assert wave.shape == (1, 44_100) and str(wave.dtype) == "torch.float32"
    row = ds.table.iloc[0]
    assert (label, device, city, filename) == (row["label"], row["device"], row["city"], row["filename"])
    assert isinstance(label, int) and 0 <= label < 10 and filename.startswith("audio/")


def test_split_arrays_cached_and_invalidated(tiny_data, tmp_path, monkeypatch):
    copy = tmp_path / "tiny"
    shutil.copytree(tiny_data, copy, ignore=shutil.ignore_patterns(".cache"))
    arrays = load_split_arrays(copy, "split100", progress=False)
    ds = TAUDataset(copy, "split100")
    assert arrays.waves.shape == (len(ds), 44_100) and arrays.waves.dtype == np.float16
    assert isinstance(arrays.waves, np.memmap)
    assert arrays.filenames == ds.table["filename"].tolist() and arrays.labels.dtype == np.int64
    assert arrays.devices[3] == ds[3][2] and arrays.cities[3] == ds[3][3]
    np.testing.assert_allclose(arrays.waves[3].astype(np.float32), ds[3][0][0].numpy(), atol=1e-3)

    def no_reading(path):
        raise AssertionError(f"read {path} although the cache exists")

    monkeypatch.setattr(cache_module, "load_clip", no_reading)
    again = load_split_arrays(copy, "split100", progress=False)
    assert again.filenames == arrays.filenames
    monkeypatch.undo()
    monkeypatch.setattr(tau, "_warned", set())

    split_file = copy / "split_setup" / "split100.csv"
    lines = split_file.read_bytes().split(b"\r\n")
    split_file.write_bytes(b"\r\n".join(lines[:-3] + [b""]))  # drop two clips: the file list changes
    smaller = load_split_arrays(copy, "split100", progress=False)
    assert len(smaller) == len(arrays) - 2
    assert len(list((copy / ".cache").glob("split100-*.npy"))) == 1  # the stale cache was replaced


def _arrays(per_device: dict[str, int], classes: int = 10) -> SplitArrays:
    """In-memory split arrays: per_device[d] clips of device d, labels cycling over `classes` classes, wave[i] = i."""
    devices = [d for d, n in per_device.items() for _ in range(n)]
    labels = np.concatenate([np.arange(n) % classes for n in per_device.values()]).astype(np.int64)
    n = len(devices)
    return SplitArrays(waves=np.repeat(np.arange(n, dtype=np.float32)[:, None], 4, axis=1), labels=labels, devices=devices,
                       cities=["lyon"] * n, filenames=[f"audio/clip-{i}.wav" for i in range(n)])


def test_subset_sizes_devices_and_class_balance():
    arrays = _arrays({"a": 97, "b": 40, "s4": 3})
    sub = arrays.subset(25, seed=0)
    counts = pd.Series(sub.devices).value_counts().to_dict()
    assert counts == {"a": 25, "b": 25, "s4": 3}, "at most 25 per device; a device with fewer clips keeps all of them"
    for device in ("a", "b"):
        per_class = np.bincount(sub.labels[np.asarray(sub.devices) == device], minlength=10)
        assert per_class.max() - per_class.min() == 1 and per_class.sum() == 25, per_class  # 25 = 5 classes x 3 + 5 x 2
    rows = [int(w[0]) for w in sub.waves]  # wave[i] = i: the rows that were kept
    assert rows == sorted(rows) and len(set(rows)) == len(rows), "kept clips stay in split order, without repeats"
    assert [arrays.filenames[i] for i in rows] == sub.filenames and (arrays.labels[rows] == sub.labels).all()
    assert [arrays.devices[i] for i in rows] == sub.devices and not isinstance(sub.waves, np.memmap)
    assert list(arrays.subset_rows(25, seed=0)) == rows


def test_subset_a_class_that_runs_out():
    arrays = _arrays({"a": 12}, classes=10)  # classes 0 and 1 have 2 clips, the others 1
    per_class = np.bincount(arrays.subset(11, seed=3).labels, minlength=10)
    assert sorted(per_class) == [1] * 9 + [2], "one round over all classes first, then the second clips"


def test_subset_determinism_seeds_and_nesting():
    arrays = _arrays({"a": 200, "b": 60, "c": 60})
    first, again = arrays.subset(20, seed=1), arrays.subset(20, seed=1)
    assert first.filenames == again.filenames and np.array_equal(first.waves, again.waves)
    assert arrays.subset(20, seed=2).filenames != first.filenames
    assert set(arrays.subset(10, seed=1).filenames) < set(first.filenames), "a smaller cap keeps a subset of the clips"
    only_b = arrays.subset({"b": 20}, seed=1)
    assert set(only_b.devices) == {"b"}, "devices a dict does not name are left out"
    assert only_b.filenames == [f for f, d in zip(first.filenames, first.devices) if d == "b"], "a device's draw ignores the others"
    assert pd.Series(arrays.subset({"a": 5, "c": 1000}, seed=0).devices).value_counts().to_dict() == {"a": 5, "c": 60}
    assert arrays.subset(None) is arrays and len(arrays.subset(0, seed=0)) == 0
    with pytest.raises(ValueError, match="count >= 0"):
        arrays.subset(-1, seed=0)
    with pytest.raises(ValueError, match="count >= 0"):
        arrays.subset({"a": 2.5}, seed=0)


def test_subset_of_a_cached_split(tiny_data):
    test = load_split_arrays(tiny_data, "test", progress=False)
    sub = test.subset(4, seed=0)
    assert pd.Series(sub.devices).value_counts().to_dict() == {d: 4 for d in set(test.devices)}
    rows = test.subset_rows(4, seed=0)
    np.testing.assert_array_equal(sub.waves, test.waves[rows])


def test_check_data_dir_contract_shared_by_both_checks(tiny_data, tmp_path, capsys):
    from asc_utils import check as env_check
    from asc_utils.data import DataCheck, check_data_dir

    good = check_data_dir(tiny_data)
    assert isinstance(good, DataCheck) and good.ok and good.exists and good.embedded and not good.problems and good.notes
    assert env_check.check_data_dir(tiny_data)
    assert "[OK] data directory" in capsys.readouterr().out
    broken = tmp_path / "broken"
    shutil.copytree(tiny_data, broken, ignore=shutil.ignore_patterns(".cache"))
    (broken / "split_setup" / "test.csv").write_text("filename\tscene_label\n")  # present, but empty
    bad = check_data_dir(broken)
    assert not bad.ok and bad.exists and any("per device" in p for p in bad.problems)
    assert not env_check.check_data_dir(broken), "both checks agree: the folder has problems"
    out = capsys.readouterr().out
    assert "[FAIL] data directory" in out and bad.problems[0] in out and "asc data check --data-dir" in out
    missing = check_data_dir(tmp_path / "nowhere")
    assert not missing.ok and not missing.exists and len(missing.problems) == 1
