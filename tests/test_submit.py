"""`asc submit`: complexity.json, output.csv and test_accuracy.json in the DCASE2025 formats, and its error messages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from asc_utils import inference, runs
from asc_utils.audio import write_wav
from asc_utils.cli import main
from asc_utils.labels import CLASSES, DCASE_COMPLEXITY_DEVICES
from asc_utils.models import build_model
from asc_utils.multidevice import MultiDeviceModel
from asc_utils.pretrained import load_published
from asc_utils.submit import make_submission, output_table, read_eval_setup

EVAL_DEVICES = ["a", "b", "s7", "s10", "c", "s4"]


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An evaluation folder as DCASE2025 ships it: evaluation_setup/fold1_test.csv (filename, device_id) + audio/."""
    folder = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(1)
    names = [f"audio/{i}.wav" for i in range(len(EVAL_DEVICES))]
    for name in names:
        write_wav(folder / name, 0.05 * rng.standard_normal(44_100))
    (folder / "evaluation_setup").mkdir()
    pd.DataFrame({"filename": names, "device_id": EVAL_DEVICES}).to_csv(folder / "evaluation_setup" / "fold1_test.csv", sep="\t", index=False)
    return folder


def _check_output(path: Path, eval_dir: Path) -> pd.DataFrame:
    table = pd.read_csv(path, sep="\t")
    assert list(table.columns) == ["filename", "scene_label", *CLASSES]
    assert table["filename"].tolist() == read_eval_setup(eval_dir)["filename"].tolist()
    probs = table[list(CLASSES)].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
    assert table["scene_label"].tolist() == [CLASSES[i] for i in probs.argmax(1)]
    return table


def test_output_table_is_softmax_in_class_order() -> None:
    logits = torch.zeros(2, 10)
    logits[0, 3], logits[1, 9] = 5.0, 1.0
    table = output_table(["audio/0.wav", "audio/1.wav"], logits)
    assert list(table.columns) == ["filename", "scene_label", *CLASSES]
    assert table["scene_label"].tolist() == ["metro_station", "tram"]
    assert table.loc[0, "metro_station"] == pytest.approx(np.exp(5) / (np.exp(5) + 9))


def _no_local_paths(out: Path, *folders: Path) -> None:
    """No shared file may hold an absolute local path (of the output, the evaluation folder or the data set)."""
    for path in out.iterdir():
        content = path.read_bytes()
        for folder in folders:
            assert str(folder.resolve()).encode() not in content, f"{path.name} holds the local path {folder}"


def test_submission_of_the_published_model(shared_dir: Path, tiny_data: Path, eval_dir: Path, tmp_path: Path) -> None:
    weights = shared_dir / "reference" / "sntl" / "sntl_task1_2_state_dict.pt"
    paths = make_submission(weights, eval_dir, tmp_path / "out", data_dir=tiny_data, use_cuda=False, progress=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths.values()) == [
        "complexity.json", "model_state_dict.pt", "output.csv", "test_accuracy.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"], "the temporary folder next to --out must be gone"
    complexity = json.loads(paths["complexity"].read_text())
    assert list(complexity["per_device"]) == list(DCASE_COMPLEXITY_DEVICES)
    assert all(entry == {"MACs": 10_902_300, "Params": 117_210} for entry in complexity["per_device"].values())
    assert (complexity["max_MACs"], complexity["max_Params"]) == (10_902_300, 117_210)
    _check_output(paths["output"], eval_dir)
    accuracy = json.loads(paths["test_accuracy"].read_text())
    assert accuracy["clips"] == 180 and accuracy["precision"] == "fp16"
    assert {"overall", "macro", "per_device", "per_group", "per_class"} <= set(accuracy)
    assert set(accuracy["per_group"]) == {"real", "seen", "unseen"}
    assert accuracy["Test Accuracy"] == round(100 * accuracy["overall"], 2), "the template's key: overall accuracy in %"
    assert accuracy["data_dir"] == tiny_data.name and accuracy["embedded_data_set"] is True
    state = torch.load(paths["model_state_dict"], weights_only=True)
    published = load_published("task1_2", path=weights).half().state_dict()
    assert state.keys() == published.keys() and all(torch.equal(state[k], published[k]) for k in state), "fp16 as submitted"
    assert inference.load_model(paths["model_state_dict"]).model_name == "sntl_task1_2"
    _no_local_paths(tmp_path / "out", tmp_path, eval_dir, tiny_data)


def test_asc_submit_on_a_multidevice_run(tiny_data: Path, eval_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    MultiDeviceModel(build_model(), {"a": build_model(), "b": build_model()}).save(tmp_path / "run" / runs.MULTIDEVICE)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")  # a file of the user's in --out
    argv = ["submit", "--run", str(tmp_path / "run"), "--eval-dir", str(eval_dir), "--out", str(tmp_path / "out"),
            "--data-dir", str(tiny_data), "--device", "cpu"]
    assert main(argv) == 0
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "run"], "no temporary folder may be left behind"
    submitted = inference.load_model(tmp_path / "out" / "model_state_dict.pt")  # the multi-device file content, fp16
    reference = inference.load_model(tmp_path / "run")
    assert submitted.devices == ("a", "b") and next(submitted.parameters()).dtype == torch.float16
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in submitted.state_dict().items())
    _no_local_paths(tmp_path / "out", tmp_path, eval_dir, tiny_data)
    complexity = json.loads((tmp_path / "out" / "complexity.json").read_text())
    assert set(complexity["per_device"]) == set(DCASE_COMPLEXITY_DEVICES) and complexity["max_Params"] == 117_210
    table = _check_output(tmp_path / "out" / "output.csv", eval_dir)
    logits, _ = inference.predict([eval_dir / f for f in table["filename"]], EVAL_DEVICES, tmp_path / "run", use_cuda=False,
                                  progress=False)
    np.testing.assert_allclose(table[list(CLASSES)].to_numpy(), torch.softmax(torch.stack(logits), 1).numpy(), atol=1e-5)
    assert json.loads((tmp_path / "out" / "test_accuracy.json").read_text())["clips"] == 180


def test_bad_evaluation_folders_are_explained(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(FileNotFoundError, match="fold1_test.csv"):
        read_eval_setup(tmp_path)
    (tmp_path / "evaluation_setup").mkdir()
    (tmp_path / "evaluation_setup" / "fold1_test.csv").write_text("filename,device_id\naudio/0.wav,a\n")
    with pytest.raises(ValueError, match="tab-separated"):
        read_eval_setup(tmp_path)
    torch.save(build_model().state_dict(), tmp_path / "model.pt")
    assert main(["submit", "--run", str(tmp_path / "model.pt"), "--eval-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert "error:" in capsys.readouterr().err


def test_corrupt_evaluation_audio_is_named_and_nothing_is_written(tiny_data: Path, eval_dir: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    damaged = tmp_path / "eval"
    shutil.copytree(eval_dir, damaged)
    (damaged / "audio" / "1.wav").write_bytes(b"RIFF\x00\x00 not audio")
    (damaged / "audio" / "4.wav").write_bytes(b"")
    torch.save(build_model().state_dict(), tmp_path / "model.pt")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "output.csv").write_text("an earlier submission")
    base = ["submit", "--run", str(tmp_path / "model.pt"), "--eval-dir", str(damaged), "--data-dir", str(tiny_data), "--device", "cpu"]
    assert main([*base, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    err = err[err.index("error: "):]  # after the progress bars
    assert err.startswith("error: 2 of the 6 audio files cannot be read: audio/1.wav, audio/4.wav") and err.count("\n") == 1
    assert "nothing was written" in err and "Replace the damaged files" in err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "output.csv"], "no partial submission"
    assert (out / "output.csv").read_text() == "an earlier submission" and (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval", "model.pt", "out"], "the temporary folder must be gone"
    assert main([*base, "--out", str(tmp_path / "new" / "sub")]) == 2
    assert not (tmp_path / "new").exists(), "folders the failed command created are removed again"
