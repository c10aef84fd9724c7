"""`asc submit`: complexity.json, output.csv and test_accuracy.json in the DCASE2025 formats, and its error messages."""

from __future__ import annotations

import json
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


def test_submission_of_the_published_model(shared_dir: Path, tiny_data: Path, eval_dir: Path, tmp_path: Path) -> None:
    weights = shared_dir / "reference" / "sntl" / "sntl_task1_2_state_dict.pt"
    paths = make_submission(weights, eval_dir, tmp_path, data_dir=tiny_data, use_cuda=False, progress=False)
    complexity = json.loads(paths["complexity"].read_text())
    assert list(complexity["per_device"]) == list(DCASE_COMPLEXITY_DEVICES)
    assert all(entry == {"MACs": 10_902_300, "Params": 117_210} for entry in complexity["per_device"].values())
    assert (complexity["max_MACs"], complexity["max_Params"]) == (10_902_300, 117_210)
    _check_output(paths["output"], eval_dir)
    accuracy = json.loads(paths["test_accuracy"].read_text())
    assert accuracy["clips"] == 180 and accuracy["precision"] == "fp16"
    assert {"overall", "macro", "per_device", "per_group", "per_class"} <= set(accuracy)
    assert set(accuracy["per_group"]) == {"real", "seen", "unseen"}


def test_asc_submit_on_a_multidevice_run(tiny_data: Path, eval_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    MultiDeviceModel(build_model(), {"a": build_model(), "b": build_model()}).save(tmp_path / "run" / runs.MULTIDEVICE)
    argv = ["submit", "--run", str(tmp_path / "run"), "--eval-dir", str(eval_dir), "--out", str(tmp_path / "out"),
            "--data-dir", str(tiny_data), "--device", "cpu"]
    assert main(argv) == 0
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
