"""The data layer never deletes what it did not create and never reports success for work it did not do (issue #16):
`asc data synth --overwrite` on foreign folders, messages that point at it, `make tutorial` with ASC_DATA_DIR, `asc data
check` opening every file, the split cache following replaced files and cleaning killed writes, `asc check` agreeing."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from asc_utils import check as env_check
from asc_utils.cli import main
from asc_utils.data import DataError, check_data_dir, load_meta, load_split_arrays
from asc_utils.data import cache as cache_module
from asc_utils.data import check as data_check
from asc_utils.errors import UserError
from asc_utils.synth import DataSetExistsError, synthesize

REPO = Path(__file__).resolve().parents[1]


def _digest(folder: Path) -> dict[str, str]:
    """Every file under folder (relative path -> sha256)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _copy(tiny_data: Path, dest: Path, *skip: str) -> Path:
    shutil.copytree(tiny_data, dest, ignore=shutil.ignore_patterns(".cache", *skip))
    return dest


def _tau_like(folder: Path) -> Path:
    """A folder as a real TAU22 download looks before its meta archive is unpacked: audio/ and split files, no card."""
    (folder / "audio").mkdir(parents=True)
    sf.write(str(folder / "audio" / "airport-lyon-1-100-0-a.wav"), np.zeros(441, np.float32), 44_100, subtype="PCM_24")
    (folder / "split_setup").mkdir()
    (folder / "split_setup" / "test.csv").write_text("filename\tscene_label\n")
    (folder / "notes.txt").write_text("mine\n")
    return folder


# 1. asc data synth --overwrite replaces only a data set it wrote --------------------------------------------------------

@pytest.mark.parametrize("card", [None, "{not json", {"synthetic": False, "real_subset": True, "subset": "mini"},
                                  {"synthetic": True, "generator": "someone-else"}],
                         ids=["no-card", "unreadable-card", "fetched-subset", "other-generator"])
def test_synth_overwrite_refuses_a_folder_it_did_not_write(tmp_path, capsys, card):
    folder = _tau_like(tmp_path / "TAU-urban-acoustic-scenes-2022-mobile-development")
    if card is not None:
        (folder / "data_card.json").write_text(card if isinstance(card, str) else json.dumps(card))
    before = _digest(folder)
    assert main(["data", "synth", "--preset", "tiny", "--out", str(folder), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "not a data set that `asc data synth` wrote" in err and "Nothing was changed" in err
    assert "audio/ (1 entry)" in err and "--out data/tiny" in err, "says what the folder holds and where to generate instead"
    if card and not isinstance(card, str) and card.get("real_subset"):
        assert "asc data fetch" in err
    assert _digest(folder) == before, "not a single file was touched"


def test_synth_refuses_a_file_as_output(tmp_path):
    target = tmp_path / "data.tar"
    target.write_bytes(b"keep me")
    with pytest.raises(DataSetExistsError, match="is a file"):
        synthesize(target, preset="tiny", overwrite=True, progress=False)
    assert target.read_bytes() == b"keep me"


def test_synth_overwrite_replaces_only_the_generated_files(tiny_data, tmp_path):
    folder = _copy(tiny_data, tmp_path / "tiny", "meta.csv")  # an interrupted generation: card first, meta.csv last
    found = check_data_dir(folder, progress=False)
    assert not found.ok and "unfinished" in found.problems[0] and "--overwrite deletes" in found.problems[0]
    with pytest.raises(DataSetExistsError, match="unfinished.*--overwrite.*deletes the generated files"):
        synthesize(folder, preset="tiny", seed=1, progress=False)
    mine = {"audio/my-recording.flac": b"flac", "split_setup/my_split.csv": b"filename\n", "README-mine.txt": b"notes",
            ".cache/keep.npy": b"mine"}
    for name, data in mine.items():
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(data)
    (folder / ".cache" / "split100-0123456789abcdef.npy").write_bytes(b"a stale cache of ours")
    synthesize(folder, preset="tiny", seed=1, overwrite=True, progress=False)
    assert {name: (folder / name).read_bytes() for name in mine} == mine, "files the generator did not write are kept"
    assert not (folder / ".cache" / "split100-0123456789abcdef.npy").exists()
    listed = set(load_meta(folder)["filename"])
    clips = {f"audio/{p.name}" for p in (folder / "audio").iterdir()} - {"audio/my-recording.flac"}
    assert clips == listed, "the seed-0 clips are gone, the seed-1 clips are there"
    assert json.loads((folder / "data_card.json").read_text())["seed"] == 1
    assert sorted(p.name for p in (folder / "split_setup").iterdir()) == sorted(
        ["my_split.csv", "split5.csv", "split10.csv", "split25.csv", "split50.csv", "split100.csv", "test.csv"])
    assert check_data_dir(folder, progress=False).ok


def test_no_message_points_at_synth_into_the_users_folder(tmp_path, capsys):
    """Every 'no meta.csv' message suggests a new folder, never `asc data synth --out <the user's folder>`."""
    from asc_utils.recipe import TrainConfig
    from asc_utils.train import train_base

    folder = _tau_like(tmp_path / "tau22")
    messages = list(check_data_dir(folder, progress=False).problems)
    with pytest.raises(DataError) as meta_error:
        load_meta(folder)
    messages.append(str(meta_error.value))
    with pytest.raises(UserError) as train_error:
        train_base(folder, tmp_path / "run", TrainConfig(), progress=False)
    messages.append(str(train_error.value))
    assert main(["data", "check", "--data-dir", str(folder)]) == 1
    messages.append(capsys.readouterr().out)
    for message in messages:
        assert "asc data synth --preset tutorial --out data/tutorial" in message, message
        assert f"--out {folder}" not in message, message


# 2. make tutorial honours ASC_DATA_DIR --------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_make_tutorial_honours_asc_data_dir(tmp_path):
    def dry_run(**env: str) -> str:
        base = {k: v for k, v in os.environ.items() if k not in ("ASC_DATA_DIR", "MAKEFLAGS", "MAKELEVEL")}
        result = subprocess.run(["make", "-n", "tutorial", f"DATA={tmp_path / 'embedded'}"], cwd=REPO,
                                env={**base, **env}, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout

    real = dry_run(ASC_DATA_DIR="/x/TAU22")
    assert 'asc tutorial --data-dir "/x/TAU22"' in real
    assert "asc data synth" not in real and str(tmp_path / "embedded") not in real, "nothing is generated"
    embedded = dry_run()
    assert f"asc data synth --preset tutorial --out {tmp_path / 'embedded'}" in embedded
    assert f"asc tutorial --data-dir {tmp_path / 'embedded'}" in embedded
    assert f"asc tutorial --data-dir {tmp_path / 'embedded'}" in dry_run(ASC_DATA_DIR="")


# 3. asc data check opens every file -----------------------------------------------------------------------------------

def test_data_check_finds_every_bad_wav(tiny_data, tmp_path, capsys):
    folder = _copy(tiny_data, tmp_path / "tiny")
    names = load_meta(folder)["filename"].tolist()
    assert len(names) > 200
    bad = {i: names[i] for i in (101, 102, 103, 105, 106, 107, len(names) - 1)}  # none among the first 20
    tone = 0.1 * np.sin(np.arange(44_100) / 10).astype(np.float32)
    (folder / bad[101]).write_bytes(os.urandom(4000))  # corrupt: garbage bytes
    (folder / bad[102]).write_bytes(b"")  # empty file
    sf.write(str(folder / bad[103]), tone[:0], 44_100, subtype="PCM_24")  # a valid header, no samples
    sf.write(str(folder / bad[105]), tone[:22_050], 44_100, subtype="PCM_24")  # wrong length
    sf.write(str(folder / bad[106]), tone, 22_050, subtype="PCM_24")  # wrong sample rate
    data = (folder / bad[107]).read_bytes()
    (folder / bad[107]).write_bytes(data[: len(data) // 2])  # truncated copy
    sf.write(str(folder / bad[len(names) - 1]), np.stack([tone, tone], axis=1), 44_100, subtype="PCM_24")  # stereo

    result = check_data_dir(folder, progress=False)
    assert not result.ok
    listed = {name for group in result.files.values() for name in group}
    assert listed == set(bad.values())
    assert set(result.files[data_check.UNREADABLE]) == {bad[101], bad[102]}
    assert set(result.files["44,100 Hz, 1 channel(s), 0 samples"]) == {bad[103]}
    assert set(result.files["22,050 Hz, 1 channel(s), 44,100 samples"]) == {bad[106]}
    assert set(result.files["44,100 Hz, 2 channel(s), 44,100 samples"]) == {bad[len(names) - 1]}

    assert main(["data", "check", "--data-dir", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "All checks passed" not in out and all(name in out for name in bad.values())
    assert f"{data_check.UNREADABLE}: 2 file(s)" in out and "truncated" in out
    assert not env_check.check_data_dir(folder), "asc check agrees"
    assert "[FAIL] data directory" in capsys.readouterr().out


# 4. the split cache: replaced files, killed writes --------------------------------------------------------------------

def test_cache_follows_a_replaced_wav(tiny_data, tmp_path):
    folder = _copy(tiny_data, tmp_path / "tiny")
    first = load_split_arrays(folder, "split10", progress=False)
    row = 5
    target = folder / first.filenames[row]
    old = target.stat()
    sf.write(str(target), np.full(44_100, 0.25, np.float32), 44_100, subtype="PCM_24")  # same name, same size
    os.utime(target, ns=(old.st_atime_ns, old.st_mtime_ns + 1_000_000_000))
    assert target.stat().st_size == old.st_size
    again = load_split_arrays(folder, "split10", progress=False)
    np.testing.assert_allclose(again.waves[row].astype(np.float32), 0.25, atol=1e-3)
    assert not np.allclose(first.waves[row].astype(np.float32), 0.25, atol=1e-3)
    assert len(list((folder / ".cache").glob("split10-*.npy"))) == 1, "the stale cache was replaced"


KILLED_WRITER = """
import os, sys
from asc_utils.data import cache
calls = []
def dying_load(path):
    calls.append(path)
    if len(calls) == 3:
        os._exit(9)  # no clean-up, as after kill -9
    return cache.__dict__["_real_load"](path)
cache._real_load = cache.load_clip
cache.load_clip = dying_load
cache.load_split_arrays(sys.argv[1], "split10", progress=False)
"""


def test_a_killed_cache_write_is_cleaned_up(tiny_data, tmp_path):
    folder = _copy(tiny_data, tmp_path / "tiny")
    result = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(folder)], cwd=REPO, capture_output=True, timeout=120)
    assert result.returncode == 9, result.stderr
    cache = folder / ".cache"
    left = [p.name for p in cache.iterdir()]
    assert len(left) == 1 and cache_module._TEMP_NAME.match(left[0]), left  # only the hidden temporary, never the final name
    host = cache_module._host()
    alive = os.getppid()
    keep = [f".split10-0123456789abcdef.{host}-{alive}.npy",  # a writer that is still running
            f".split10-0123456789abcdef.{host}-{os.getpid()}.npy",  # this process's own
            ".split10-0123456789abcdef.othermachine-12345.npy",  # written on another machine (shared folder)
            ".notes.npy", "my-arrays.npy", ".split10-0123456789abcdef.npy"]  # not our temporary pattern
    for name in keep:
        (cache / name).write_bytes(b"keep")
    arrays = load_split_arrays(folder, "split10", progress=False)
    remaining = sorted(p.name for p in cache.iterdir())
    assert left[0] not in remaining, "the dead writer's temporary was removed"
    assert sorted(set(remaining) - set(keep)) == [f"split10-{cache_module.cache_key(folder, arrays.filenames, np.float16)}.npy"]
    assert set(keep) <= set(remaining)
    assert len(arrays) == len(pd.read_csv(folder / "split_setup" / "split10.csv", sep="\t"))


def test_shared_cache_folder_is_per_data_folder(tmp_path, monkeypatch):
    """A read-only data folder caches under the user cache, in a folder of its own (no clash between data folders)."""
    monkeypatch.setenv("ASC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cache_module.os, "access", lambda path, mode: False)
    a, b = cache_module._cache_folder(tmp_path / "one" / "tau"), cache_module._cache_folder(tmp_path / "two" / "tau")
    assert a != b and a.parent == b.parent == tmp_path / "cache" / "splits"


# 5. asc check agrees with asc data check ------------------------------------------------------------------------------

def test_asc_check_names_a_file_as_a_file(tmp_path, monkeypatch, capsys):
    target = tmp_path / "meta.csv"
    target.write_text("x")
    monkeypatch.setenv("ASC_DATA_DIR", str(target))
    assert not env_check.check_data_dir()
    out = capsys.readouterr().out
    assert "is a file, not a folder" in out and "does not exist" not in out and "$ASC_DATA_DIR" in out
    assert not check_data_dir(target).ok and "is a file" in check_data_dir(target).problems[0]


def test_real_tau22_folder_without_split_setup_passes_both_checks(tiny_data, tmp_path, monkeypatch, capsys):
    folder = _copy(tiny_data, tmp_path / "tau22", "split_setup", "data_card.json", "DATA_CARD.md")
    monkeypatch.setattr(data_check, "TAU_META_ROWS", len(load_meta(folder)))  # the tiny meta.csv stands in for the real one
    result = check_data_dir(folder, progress=False)
    assert result.ok and not result.embedded, result.problems
    assert any("split_setup/ is not there yet" in n and "downloaded on first use" in n for n in result.notes)
    assert env_check.check_data_dir(folder)
    assert "[OK] data directory" in capsys.readouterr().out
    assert main(["data", "check", "--data-dir", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "downloaded on first use" in out and "All checks passed" in out
    assert not (folder / "split_setup").exists(), "checking downloads nothing"
