"""Run folders: replacing a run as a whole, --resume with nothing to resume, one process per folder, damaged files, quoting."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from asc_utils import runs
from asc_utils.cli import main
from asc_utils.data import load_split_arrays
from asc_utils.models import build_model
from asc_utils.train import TrainConfig, Trainer, TrainError, fit

REPO = Path(__file__).resolve().parents[1]
FAST = ["--epochs", "1", "--batch-size", "32", "--device", "cpu", "--dir-p", "0"]

pytestmark = pytest.mark.usefixtures("one_thread")


def base_args(data: Path, out: Path, *extra: str) -> list[str]:
    """`asc train base` on the tiny data set: one epoch, batch 32, CPU, no DIR."""
    return ["train", "base", "--data-dir", str(data), "--out", str(out), *FAST, *extra]


def devices_args(base: Path, out: Path, *extra: str) -> list[str]:
    """`asc train devices` on device b of the tiny data set: one epoch, batch 32, CPU."""
    return ["train", "devices", "--base", str(base), "--out", str(out), "--devices", "b", *FAST, *extra]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under a folder (relative path -> content)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def suggested(message: str) -> list[str]:
    """The last command a message suggests (between backticks), split as the shell splits it."""
    return shlex.split(message.split("`")[-2])


def dead_pid() -> int:
    """The process id of a process that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="module")
def finished(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A finished stage-1 run with the files `asc eval` adds (by name), and a stage-2 run (device b) on top of it."""
    root = tmp_path_factory.mktemp("runs")
    assert main(base_args(tiny_data, root / "base")) == 0
    assert main(devices_args(root / "base", root / "devices")) == 0
    for name in (runs.METRICS, runs.PREDICTIONS, *runs.FIGURES):
        (root / "base" / name).write_text("written by asc eval")
    return {"base": root / "base", "devices": root / "devices"}


def copy_run(source: Path, dest: Path) -> Path:
    """A copy of a run folder to change in one test."""
    shutil.copytree(source, dest)
    return dest


def assert_no_leftovers(run: Path) -> None:
    """Neither the lock file nor a run set aside stays behind."""
    assert not runs.lock_path(run).exists()
    assert not runs.aside_path(run).exists()


# ---- 1. --overwrite replaces a run as a whole ------------------------------------------------------------------------


def test_overwrite_replaces_the_run_as_a_whole_after_its_first_checkpoint(finished: dict, tiny_data: Path, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    run = copy_run(finished["base"], tmp_path / "run")
    seen = []
    save_checkpoint = runs.save_checkpoint

    def spy(run_dir: Path, state: dict) -> Path:
        seen.append((runs.aside_path(run).is_dir(), sorted(p.name for p in run.iterdir())))
        return save_checkpoint(run_dir, state)

    monkeypatch.setattr(runs, "save_checkpoint", spy)
    assert main(base_args(tiny_data, run, "--overwrite", "--seed", "7")) == 0
    # at the first checkpoint the old run still waited aside, and the new folder held only the new run's config.json
    assert seen == [(True, [runs.CONFIG])]
    assert sorted(p.name for p in run.iterdir()) == sorted([runs.CONFIG, runs.CHECKPOINT, runs.HISTORY_CSV, runs.HISTORY_JSON,
                                                            runs.MODEL])  # no metrics, predictions or figures of the old run
    assert json.loads((run / runs.CONFIG).read_text())["train"]["seed"] == 7
    assert_no_leftovers(run)


def test_a_new_run_that_fails_before_its_first_checkpoint_puts_the_old_one_back(finished: dict, tiny_data: Path,
                                                                                tmp_path: Path,
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    run = copy_run(finished["base"], tmp_path / "run")
    before = snapshot(run)

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "step", interrupted)
    assert main(base_args(tiny_data, run, "--overwrite")) == 130
    assert snapshot(run) == before
    assert_no_leftovers(run)
    # a folder the new run created is removed again, and an empty folder of the user's stays, empty
    assert main(base_args(tiny_data, tmp_path / "new" / "run")) == 130
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    assert main(base_args(tiny_data, tmp_path / "empty")) == 130
    assert list((tmp_path / "empty").iterdir()) == []


def test_a_new_run_that_fails_after_its_first_checkpoint_stays_and_the_old_one_is_gone(finished: dict, tiny_data: Path,
                                                                                       tmp_path: Path,
                                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    run = copy_run(finished["base"], tmp_path / "run")
    arrays = load_split_arrays(tiny_data, "split25", progress=False)
    config = TrainConfig(epochs=2, batch_size=32, device="cpu", dir_p=0.0)

    def stop_after_epoch_1(row: dict) -> None:
        raise RuntimeError("stopped")

    with pytest.raises(RuntimeError, match="stopped"):
        fit(build_model(), arrays, config, run, progress=False, on_epoch_end=stop_after_epoch_1)
    assert len(runs.read_history(run)) == 1 and not (run / runs.MODEL).exists() and not (run / runs.METRICS).exists()
    assert_no_leftovers(run)
    fit(build_model(), arrays, config, run, resume=True, progress=False)  # the new run continues
    assert len(runs.read_history(run)) == 2


def test_a_replacement_cut_short_by_a_killed_process_is_finished_on_the_next_start(finished: dict, tmp_path: Path) -> None:
    run = tmp_path / "run"
    aside = runs.aside_path(run)
    shutil.copytree(finished["base"], aside)
    run.mkdir()
    shutil.copy(finished["base"] / runs.CONFIG, run / runs.CONFIG)  # all the new run wrote before it was killed
    runs.lock_path(run).write_text(json.dumps({"pid": dead_pid()}))
    with runs.lock_run(run):
        assert snapshot(run) == snapshot(finished["base"])  # the old run is back
    assert_no_leftovers(run)
    shutil.copytree(finished["base"], aside)  # now the new run (the one in `run`) had written its first checkpoint
    with runs.lock_run(run):
        pass
    assert snapshot(run) == snapshot(finished["base"])
    assert_no_leftovers(run)


def test_overwrite_refuses_a_folder_that_holds_anything_else(finished: dict, tiny_data: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    (mine / runs.CONFIG).write_text(json.dumps({"learning_rate": 1}))
    for extra in ([], ["--overwrite"]):
        assert main(base_args(tiny_data, mine, *extra)) == 2
        err = capsys.readouterr().err
        assert "not a training run of this project" in err and "notes.txt" in err and "config.json is not one" in err
    assert main(devices_args(finished["base"], mine, "--overwrite")) == 2
    assert "notes.txt" in capsys.readouterr().err
    assert snapshot(mine) == {"notes.txt": b"my notes", runs.CONFIG: b'{"learning_rate": 1}'}

    run = copy_run(finished["base"], tmp_path / "run")  # a run, plus a file of the user's in it
    (run / "notes.txt").write_text("my notes")
    (run / runs.DEVICES_DIR).mkdir()
    before = snapshot(run)
    assert main(base_args(tiny_data, run, "--overwrite")) == 2
    err = capsys.readouterr().err
    assert "a stage-1 run (`asc train base`), 1 of 1 epochs done, finished (model.pt), evaluated (metrics.json)" in err
    assert "2 entries (devices, notes.txt) that no run of this project writes" in err and "Move them out" in err
    assert snapshot(run) == before and (run / runs.DEVICES_DIR).is_dir()

    (tmp_path / "a_file").write_text("x")
    assert main(base_args(tiny_data, tmp_path / "a_file", "--overwrite")) == 2
    assert "is a file" in capsys.readouterr().err
    for folder in (mine, run, tmp_path / "a_file"):
        assert_no_leftovers(folder)


def test_without_overwrite_an_existing_run_is_refused_and_both_flags_are_one_too_many(finished: dict, tiny_data: Path,
                                                                                     capsys: pytest.CaptureFixture) -> None:
    base = finished["base"]
    before = snapshot(base)
    assert main(base_args(tiny_data, base)) == 2
    err = capsys.readouterr().err
    assert "already holds a stage-1 run" in err and f"`asc train base --out {shlex.quote(str(base))} --resume`" in err
    assert main(base_args(tiny_data, base, "--resume", "--overwrite")) == 2
    assert "only one of them" in capsys.readouterr().err
    assert main(devices_args(base, finished["devices"])) == 2
    assert "already holds a stage-2 run (`asc train devices`), 1 of 1 devices fine-tuned (b)" in capsys.readouterr().err
    assert snapshot(base) == before


def test_devices_overwrite_replaces_the_whole_stage2_run(finished: dict, tmp_path: Path) -> None:
    run = copy_run(finished["devices"], tmp_path / "devices")
    argv = ["train", "devices", "--base", str(finished["base"]), "--out", str(run), "--devices", "a", *FAST, "--overwrite"]
    assert main(argv) == 0
    assert sorted(p.name for p in (run / runs.DEVICES_DIR).iterdir()) == ["a"]  # nothing of the old run's device b
    assert json.loads((run / runs.CONFIG).read_text())["devices"] == ["a"]
    assert_no_leftovers(run)



def test_a_stage2_run_may_not_replace_its_own_base_run(finished: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base = copy_run(finished["base"], tmp_path / "base")
    before = snapshot(base)
    assert main(["train", "devices", "--base", str(base), "--out", str(base), "--overwrite", *FAST]) == 2
    assert "choose an --out folder outside the base run" in capsys.readouterr().err
    assert snapshot(base) == before
    assert_no_leftovers(base)


# ---- 2. --resume with nothing to resume ------------------------------------------------------------------------------


def test_resume_without_a_checkpoint_starts_nothing_and_says_what_to_run(finished: dict, tiny_data: Path, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"  # killed in epoch 1: config.json only
    run.mkdir()
    shutil.copy(finished["base"] / runs.CONFIG, run / runs.CONFIG)
    before = snapshot(run)
    assert main(["train", "base", "--out", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "nothing to resume" in err and "no finished epoch (no checkpoint.pt)" in err and "Nothing was started" in err
    command = suggested(err)
    assert snapshot(run) == before and not runs.lock_path(run).exists()
    assert command[:3] == ["asc", "train", "base"] and "--overwrite" in command
    for option, value in (("--epochs", "1"), ("--batch-size", "32"), ("--dir-p", "0.0"), ("--device", "cpu"),
                          ("--data-dir", str(tiny_data.resolve()))):
        assert command[command.index(option) + 1] == value, option
    arrays = load_split_arrays(tiny_data, "split25", progress=False)
    with pytest.raises(TrainError, match="nothing to resume"):  # the same through the Python API
        fit(build_model(), arrays, TrainConfig(epochs=1, device="cpu", dir_p=0.0), run, resume=True, progress=False)
    assert snapshot(run) == before
    assert main(command[1:]) == 0  # the suggested command starts the run again with its recorded settings
    assert len(runs.read_history(run)) == 1

    nowhere = tmp_path / "nowhere" / "run"
    assert main(["train", "base", "--out", str(nowhere), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "the folder does not exist" in err and suggested(err) == ["asc", "train", "base", "--out", str(nowhere)]
    assert not (tmp_path / "nowhere").exists()


def test_devices_resume_needs_a_stage2_run(finished: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base = finished["base"]
    before = snapshot(base)
    assert main(["train", "devices", "--base", str(base), "--out", str(base), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "nothing to resume" in err and "a stage-1 run" in err and "not a stage-2 run" in err
    assert suggested(err) == ["asc", "train", "devices", "--base", str(base), "--out", "NEW_FOLDER"]
    assert main(["train", "devices", "--base", str(base), "--out", str(tmp_path / "empty"), "--resume"]) == 2
    err = capsys.readouterr().err
    assert suggested(err) == ["asc", "train", "devices", "--base", str(base), "--out", str(tmp_path / "empty")]
    assert main(["train", "base", "--out", str(finished["devices"]), "--resume"]) == 2  # stage 1 on a stage-2 run
    assert "--resume" in suggested(capsys.readouterr().err) and snapshot(base) == before
    assert not (tmp_path / "empty").exists()
    # a stage-2 run resumes with its own settings: every device is finished, multidevice.pt is written again
    run = copy_run(finished["devices"], tmp_path / "devices")
    (run / runs.MULTIDEVICE).unlink()
    assert main(["train", "devices", "--base", str(base), "--out", str(run), "--resume"]) == 0
    assert (run / runs.MULTIDEVICE).is_file()


# ---- 3. one process per run folder -----------------------------------------------------------------------------------


def test_a_second_process_is_refused_and_a_dead_ones_lock_is_removed(tiny_data: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    holder = "import sys, time\nfrom asc_utils import runs\nwith runs.lock_run(sys.argv[1]):\n" \
             "    print('locked', flush=True)\n    time.sleep(300)\n"
    proc = subprocess.Popen([sys.executable, "-c", holder, str(run)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        assert main(base_args(tiny_data, run)) == 2
        err = capsys.readouterr().err
        assert f"is in use: process {proc.pid} " in err and str(runs.lock_path(run)) in err
        assert not run.exists() and runs.lock_path(run).exists()  # the refused process leaves the lock alone
    finally:
        proc.kill()
        proc.wait()
    # the killed process could not release its lock: it is stale now, and the next run removes it
    assert runs.lock_path(run).exists()
    assert main(base_args(tiny_data, run)) == 0
    assert_no_leftovers(run)


def test_a_lock_of_a_running_process_is_respected_and_a_stale_one_is_not(tiny_data: Path, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    lock = runs.lock_path(run)
    lock.write_text(str(os.getpid()))  # written by another holder: this process runs, so the lock holds
    assert main(base_args(tiny_data, run)) == 2
    assert f"process {os.getpid()} " in capsys.readouterr().err and lock.read_text() == str(os.getpid())
    assert not run.exists()
    with pytest.raises(runs.RunLockedError), runs.lock_run(run):
        pass
    lock.write_text(json.dumps({"pid": dead_pid()}))
    with runs.lock_run(run):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        with runs.lock_run(run):  # nested in the same process: the same lock
            pass
        assert lock.exists()
    assert not lock.exists()
    lock.write_text("")  # left by a process killed while creating it (an old, empty file)
    os.utime(lock, (0, 0))
    with runs.lock_run(run):
        pass
    assert not lock.exists()


def test_the_lock_is_released_on_every_way_out(tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    assert main(base_args(tiny_data, run, "--lr", "-1")) == 2  # a UserError
    assert not runs.lock_path(run).exists()
    with pytest.raises(ZeroDivisionError), runs.lock_run(run):
        raise ZeroDivisionError
    assert not runs.lock_path(run).exists()
    monkeypatch.setattr(Trainer, "step", lambda *args, **kwargs: 1 / 0)
    with pytest.raises(ZeroDivisionError):  # an unexpected error in training
        main(base_args(tiny_data, run))
    assert not runs.lock_path(run).exists() and not run.exists()


# ---- 4. damaged checkpoint.pt and model.pt ---------------------------------------------------------------------------


def test_a_damaged_checkpoint_is_reported_and_nothing_changes(finished: dict, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    run = copy_run(finished["base"], tmp_path / "run")
    checkpoint = run / runs.CHECKPOINT
    good = checkpoint.read_bytes()
    for content, found in ((good[: len(good) // 2], "could not read"), (b"", "could not read"),
                           (None, "not a complete checkpoint of this project (it lacks optimizer, scheduler")):
        if content is None:
            torch.save({"model": {}}, checkpoint)
        else:
            checkpoint.write_bytes(content)
        before = snapshot(run)
        assert main(["train", "base", "--out", str(run), "--resume"]) == 2
        err = capsys.readouterr().err
        assert found in err and str(checkpoint) in err and "cannot be continued" in err
        assert "--overwrite" in suggested(err)
        assert snapshot(run) == before
    assert_no_leftovers(run)


def test_a_damaged_model_is_reported_by_asc_eval_with_a_command_that_repairs_it(finished: dict, tmp_path: Path,
                                                                               capsys: pytest.CaptureFixture) -> None:
    run = copy_run(finished["base"], tmp_path / "run")
    model = run / runs.MODEL
    good = model.read_bytes()
    torch.save(build_model("sntl_task1_1").state_dict(), model)  # another network's weights
    assert main(["eval", "--run", str(run), "--device", "cpu"]) == 2
    assert f"could not read {model} as the weights of the run's network sntl_task1_2" in capsys.readouterr().err
    model.write_bytes(good[: len(good) // 3])
    assert main(["eval", "--run", str(run), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "could not read" in err and "the file is damaged" in err
    command = suggested(err)
    assert command == ["asc", "train", "base", "--data-dir", str(Path(json.loads((run / runs.CONFIG).read_text())["data_dir"])),
                       "--out", str(run), "--resume"]
    assert main(command[1:]) == 0  # written again from the last checkpoint
    loaded, _ = runs.load_base_model(run)
    reference, _ = runs.load_base_model(finished["base"])
    for name, value in reference.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name


def test_a_damaged_multidevice_file_says_how_to_write_it_again(finished: dict, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    run = copy_run(finished["devices"], tmp_path / "devices")
    (run / runs.MULTIDEVICE).write_bytes(b"")
    assert main(["eval", "--run", str(run), "--device", "cpu"]) == 2
    command = suggested(capsys.readouterr().err)
    assert command[:3] == ["asc", "train", "devices"] and command[-1] == "--resume"
    assert main(command[1:]) == 0
    runs.load_devices_model(run)


# ---- 5. quoting, and the names of the files a run holds --------------------------------------------------------------


def test_printed_commands_quote_paths_with_spaces(finished: dict, tiny_data: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "my runs" / "base run"
    assert main(["train", "base", "--out", str(run), "--resume"]) == 2
    assert suggested(capsys.readouterr().err) == ["asc", "train", "base", "--out", str(run)]
    assert main(base_args(tiny_data, run)) == 0
    out = capsys.readouterr().out
    assert shlex.split(out.split("Next: ")[1]) == ["asc", "eval", "--run", str(run)]
    with pytest.raises(TrainError) as info:
        runs.read_metrics(run)
    assert suggested(str(info.value)) == ["asc", "eval", "--run", str(run)]
    with pytest.raises(TrainError) as info:
        runs.read_config(tmp_path / "my runs")
    assert suggested(str(info.value)) == ["asc", "train", "base", "--out", str(tmp_path / "my runs")]


def test_asc_eval_writes_only_files_a_run_folder_may_hold(finished: dict, tmp_path: Path) -> None:
    from asc_utils.evaluate import Evaluation, write_run_evaluation

    run = copy_run(finished["base"], tmp_path / "run")
    for name in (runs.METRICS, runs.PREDICTIONS, *runs.FIGURES):
        (run / name).unlink()
    frame = pd.DataFrame({"filename": ["x.wav", "y.wav"], "device": ["a", "b"], "label": [0, 1], "pred_fp16": [0, 2]})
    write_run_evaluation(run, Evaluation(frame, {"fp16": np.zeros((2, 10))}), {"split": "test"})
    assert {runs.METRICS, runs.PREDICTIONS, *runs.FIGURES} <= {p.name for p in run.iterdir()}
    assert runs.foreign_entries(run) == []
    assert runs.foreign_entries(finished["devices"]) == []


def test_a_run_is_not_replaced_from_inside_or_through_a_link(finished: dict, tiny_data: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    run = copy_run(finished["base"], tmp_path / "run")
    before = snapshot(run)
    monkeypatch.chdir(run)
    assert main(base_args(tiny_data, Path("."), "--overwrite")) == 2
    assert "holds the current working folder" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    (tmp_path / "link").symlink_to(run, target_is_directory=True)
    assert main(base_args(tiny_data, tmp_path / "link", "--overwrite")) == 2
    err = capsys.readouterr().err
    assert "is a symbolic link" in err and f"--out {shlex.quote(str(run.resolve()))}" in err  # names the folder itself
    assert snapshot(run) == before and (tmp_path / "link").is_symlink()
    assert_no_leftovers(run)
    assert_no_leftovers(tmp_path / "link")
