"""Stage-2 fine-tuning: the recipe's settings, one fine-tuned model per device, resume per device, and `asc eval` side by side."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from asc_utils.cli import main
from asc_utils.evaluate import Evaluation, comparison_metrics, comparison_table, evaluate
from asc_utils.finetune import finetune_config, finetune_devices
from asc_utils.inference import ModelFileError, load_model
from asc_utils.multidevice import MultiDeviceModel
from asc_utils.runs import MULTIDEVICE as MULTIDEVICE_FILE
from asc_utils.runs import load_base_model, load_devices_model, load_run_model
from asc_utils.train import TrainConfig, TrainError, train_base

FAST = {"epochs": 2, "batch_size": 32, "device": "cpu"}  # two steps per device: the warm-up's first step has lr 0


@pytest.fixture(scope="module")
def runs(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A one-epoch stage-1 run on the tiny data, and `asc train devices` (two epochs) on top of it for devices a and b."""
    root = tmp_path_factory.mktemp("finetune")
    train_base(tiny_data, root / "base", TrainConfig(epochs=1, batch_size=32, dir_p=0.0, device="cpu"), progress=False)
    argv = ["train", "devices", "--base", str(root / "base"), "--out", str(root / "devices"), "--devices", "a", "b",
            "--epochs", "2", "--batch-size", "32", "--device", "cpu"]
    assert main(argv) == 0
    return {"base": root / "base", "devices": root / "devices", "argv": argv}


def test_stage2_settings_are_the_recipe() -> None:
    base = TrainConfig(model="sntl_task1_1", split="split50", seed=3, dir_dir="/irs")
    config = finetune_config(base, "b")
    assert (config.model, config.split, config.seed, config.devices) == ("sntl_task1_1", "split50", 3, ("b",))
    assert (config.optimizer, config.lr, config.weight_decay, config.warmup_steps) == ("adamw", 5e-4, 1e-4, 200)
    assert (config.epochs, config.batch_size, config.mixstyle_p, config.freq_mask) == (50, 256, 0.0, 48)
    assert (config.time_roll, config.dir_p) == (4410, 0.0)  # +-0.1 s at 44.1 kHz; DIR is a stage-1 augmentation
    assert finetune_config(base, "c", epochs=2, lr=1e-3).epochs == 2


def test_every_device_model_is_a_fully_fine_tuned_copy(runs: dict) -> None:
    model = MultiDeviceModel.load(runs["devices"] / MULTIDEVICE_FILE)
    general, _ = load_base_model(runs["base"])
    assert model.devices == ("a", "b") and model.get_model_for_device("s4") is model.general
    for name, p in general.state_dict().items():
        torch.testing.assert_close(model.general.state_dict()[name], p, rtol=0, atol=0)
    for device in ("a", "b"):
        reference = dict(general.named_parameters())
        unchanged = {n for n, p in model.device_models[device].named_parameters() if torch.equal(p, reference[n])}
        assert unchanged <= {n for n in reference if n.startswith("unused_")}, unchanged  # all used parameters were trained
    history = json.loads((runs["devices"] / "devices" / "b" / "history.json").read_text())
    assert len(history) == 2 and history[0]["lr"] > 0


def test_resume_skips_finished_devices_and_completes_an_interrupted_one(runs: dict) -> None:
    out = runs["devices"]
    before = MultiDeviceModel.load(out / MULTIDEVICE_FILE)
    stamp_a = (out / "devices" / "a" / "model.pt").stat().st_mtime_ns
    (out / "devices" / "b" / "model.pt").unlink()  # b was interrupted after its last checkpoint
    (out / MULTIDEVICE_FILE).unlink()
    other_machine = {**FAST, "device": "auto"}  # resuming elsewhere (e.g. on a GPU) is allowed
    result = finetune_devices(runs["base"], out, devices=("a", "b"), resume=True, progress=False, **other_machine)
    assert (out / "devices" / "a" / "model.pt").stat().st_mtime_ns == stamp_a
    after = MultiDeviceModel.load(out / MULTIDEVICE_FILE)
    for device in ("a", "b"):
        for name, p in before.device_models[device].state_dict().items():
            torch.testing.assert_close(after.device_models[device].state_dict()[name], p, rtol=0, atol=0)
    assert set(result.histories) == {"a", "b"}
    with pytest.raises(TrainError, match="different run"):
        finetune_devices(runs["base"], out, devices=("a", "b"), resume=True, progress=False, **{**FAST, "lr": 1e-3})


def test_cli_refuses_an_existing_run_and_a_wrong_base(runs: dict, capsys: pytest.CaptureFixture) -> None:
    assert main(runs["argv"]) == 2
    assert "--resume" in capsys.readouterr().err
    with pytest.raises(TrainError, match="stage-1 run"):
        finetune_devices(runs["devices"], runs["devices"].parent / "other", progress=False, **FAST)


def test_unfinished_run_says_how_to_continue(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"kind": "devices", "base_run": "/runs/base"}))
    with pytest.raises(TrainError, match="--resume"):
        load_devices_model(tmp_path)
    with pytest.raises(ModelFileError, match="has not finished"):
        load_model(tmp_path)


def test_asc_eval_reports_general_and_device_specific_side_by_side(runs: dict, capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", "--run", str(runs["devices"]), "--split", "split25", "--device", "cpu"]) == 0
    assert "general vs device-specific" in capsys.readouterr().out
    metrics = json.loads((runs["devices"] / "metrics.json").read_text())
    assert {"fp32", "fp16", "info", "general_fp32", "general_fp16", "device_vs_general"} <= set(metrics)
    assert {"overall", "macro", "per_device", "per_group", "per_class"} <= set(metrics["fp16"])
    side = metrics["device_vs_general"]["fp16"]
    for device in ("a", "b"):
        assert side["per_device"][device]["device_specific"] == metrics["fp16"]["per_device"][device]
        assert side["per_device"][device]["general"] == metrics["general_fp16"]["per_device"][device]


def test_one_evaluation_loop_for_the_multidevice_model_and_its_general_model(runs: dict, tiny_data: Path) -> None:
    """One shared front-end pass gives the same logits as evaluating the general and the multi-device model separately."""
    from asc_utils.data import load_split_arrays

    full = load_split_arrays(tiny_data, "test", progress=False)
    rows = [i for i, d in enumerate(full.devices) if d in ("a", "b", "s5")][::4]
    arrays = types.SimpleNamespace(waves=full.waves[rows], labels=full.labels[rows], filenames=[full.filenames[i] for i in rows],
                                   devices=[full.devices[i] for i in rows])
    model, frontend, _ = load_run_model(runs["devices"])
    together = evaluate(model, arrays, precisions=("fp32",), progress=False, with_general=True)
    for name, net in (("fp32", model), ("general_fp32", model.general)):
        alone = evaluate(net, arrays, frontend, progress=False).logits["fp32"]
        np.testing.assert_allclose(together.logits[name], alone, rtol=0, atol=1e-4)
    unseen = np.array(arrays.devices) == "s5"
    # unseen devices are routed to the general model (run on a sub-batch: equal up to float rounding)
    np.testing.assert_allclose(together.logits["fp32"][unseen], together.logits["general_fp32"][unseen], rtol=0, atol=1e-6)


def test_comparison_of_a_hand_made_evaluation() -> None:
    """b improves from 1/2 to 2/2 correct; the unseen s4 uses the general model in both columns."""
    frame = pd.DataFrame({"filename": list("wxyz"), "device": ["b", "b", "s4", "a"], "label": [0, 1, 2, 3],
                          "pred_fp16": [0, 1, 5, 3], "pred_general_fp16": [0, 4, 5, 3]})
    evaluation = Evaluation(frame, {"fp16": np.zeros((4, 10)), "general_fp16": np.zeros((4, 10))})
    table = comparison_table(evaluation)
    assert table.loc["b", ["general %", "device-specific %", "change (pp)"]].tolist() == [50.0, 100.0, 50.0]
    assert table.loc["s4", "change (pp)"] == 0.0 and table.loc["all", "device-specific %"] == 75.0
    side = comparison_metrics(evaluation)["fp16"]
    assert side["overall"] == {"general": 0.5, "device_specific": 0.75}
    assert side["per_group"]["real"] == {"general": 2 / 3, "device_specific": 1.0}
