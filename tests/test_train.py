"""Training loop: the schedule formula, that a step learns, bit-exact resume, stage-2 style configs, clear errors, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from asc_utils.data import load_split_arrays
from asc_utils.models import build_model
from asc_utils.train import TrainConfig, Trainer, TrainError, fit, train_base, warmup_cosine


pytestmark = pytest.mark.usefixtures("one_thread")


def test_defaults_are_the_published_recipe() -> None:
    c = TrainConfig()
    assert (c.epochs, c.batch_size, c.optimizer, c.lr, c.weight_decay) == (150, 256, "adam", 0.002, 0.0)
    assert (c.warmup_steps, c.num_cycles, c.grad_clip, c.split) == (20, 0.4, 0.5, "split25")
    assert (c.mixstyle_p, c.mixstyle_alpha, c.freq_mask, c.dir_p, c.time_roll) == (0.4, 0.3, 48, 0.4, 0)
    assert TrainConfig.from_dict(json.loads(json.dumps(TrainConfig(devices=("b",)).to_dict()))) == TrainConfig(devices=("b",))


def test_schedule_matches_the_documented_formula() -> None:
    warmup, total = 20, 1000
    assert warmup_cosine(0, warmup, total) == 0.0
    assert warmup_cosine(10, warmup, total) == pytest.approx(0.5)
    for step in (20, 100, 500, 999):
        progress = (step - warmup) / (total - warmup)
        assert warmup_cosine(step, warmup, total) == pytest.approx(0.5 * (1 + math.cos(math.pi * 2 * 0.4 * progress)))
    assert warmup_cosine(20, warmup, total) == pytest.approx(1.0)
    assert warmup_cosine(total - 1, warmup, total) == pytest.approx(0.0955, abs=1e-3)  # "ends near 0.095"
    assert warmup_cosine(total, warmup, total, num_cycles=0.5) == pytest.approx(0.0)  # a half cycle decays to 0
    # the optimiser follows it step by step
    trainer = Trainer(build_model(), TrainConfig(epochs=5, warmup_steps=3, device="cpu", dir_p=0), steps_per_epoch=4)
    lrs = []
    for _ in range(20):
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
        trainer.optimizer.step()
        trainer.scheduler.step()
    assert lrs == pytest.approx([0.002 * warmup_cosine(s, 3, 20) for s in range(20)])


def _batch(data_dir: Path, n: int = 8) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    arrays = load_split_arrays(data_dir, "split25", progress=False)
    return torch.from_numpy(np.array(arrays.waves[:n], dtype=np.float32)), torch.tensor(arrays.labels[:n]), arrays.devices[:n]


def test_a_step_changes_the_weights_and_the_loss_drops(tiny_data: Path) -> None:
    torch.manual_seed(0)
    config = TrainConfig(epochs=1, warmup_steps=0, device="cpu", dir_p=0, mixstyle_p=0, freq_mask=0)
    trainer = Trainer(build_model(), config, steps_per_epoch=100)
    waves, labels, devices = _batch(tiny_data)

    def batch_loss() -> float:  # train-mode loss (batch statistics) under the same dropout draws each time
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(1)
            mel = trainer.frontend(waves.unsqueeze(1))
            return torch.nn.functional.cross_entropy(trainer.model(mel), labels).item()

    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    loss0 = batch_loss()
    trainer.step(waves, labels, devices)
    changed = [k for k, v in trainer.model.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert "classifier.weight" in changed and len(changed) > 10
    for _ in range(7):
        trainer.step(waves, labels, devices)
    assert batch_loss() < loss0 - 0.2


def _run(data_dir: Path, out: Path, config: TrainConfig, **kwargs) -> dict:
    torch.manual_seed(config.seed)
    result = fit(build_model(), load_split_arrays(data_dir, config.split, progress=False), config, out, progress=False, **kwargs)
    return {"model": result.model.state_dict(), "history": result.history}


def test_resume_reproduces_an_uninterrupted_run_exactly(tiny_data: Path, tmp_path: Path) -> None:
    # every random source in use: DIR (p=1 so device-a clips are convolved), MixStyle every batch, masks, time roll, dropout
    config = TrainConfig(split="split5", epochs=2, batch_size=5, warmup_steps=2, dir_p=1.0, mixstyle_p=1.0, time_roll=441, device="cpu")
    full = _run(tiny_data, tmp_path / "full", config)

    class Interrupt(Exception):
        pass

    def stop(row: dict) -> None:
        raise Interrupt

    with pytest.raises(Interrupt):
        _run(tiny_data, tmp_path / "resumed", config, on_epoch_end=stop)
    assert not (tmp_path / "resumed" / "model.pt").exists()
    assert len(json.loads((tmp_path / "resumed" / "history.json").read_text())) == 1
    resumed = _run(tiny_data, tmp_path / "resumed", config, resume=True)
    for key, value in full["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    drop = {"seconds", "clips_per_s"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in full["history"]] == \
           [{k: v for k, v in r.items() if k not in drop} for r in resumed["history"]]
    # resuming a finished run trains nothing more; resuming with other settings is refused
    again = _run(tiny_data, tmp_path / "resumed", config, resume=True)
    assert torch.equal(again["model"]["classifier.weight"], full["model"]["classifier.weight"])
    with pytest.raises(TrainError, match="different settings \\(lr\\)"):
        _run(tiny_data, tmp_path / "resumed", TrainConfig(**{**config.to_dict(), "lr": 0.1}), resume=True)


def test_stage2_style_config_trains_one_device(tiny_data: Path, tmp_path: Path) -> None:
    config = TrainConfig(devices=("b",), optimizer="adamw", lr=5e-4, weight_decay=1e-4, warmup_steps=200, mixstyle_p=0,
                         dir_p=0, time_roll=4410, epochs=1, device="cpu")
    _run(tiny_data, tmp_path / "b", config)
    saved = json.loads((tmp_path / "b" / "config.json").read_text())
    n_b = load_split_arrays(tiny_data, "split25", progress=False).devices.count("b")
    assert saved["n_train_clips"] == n_b and saved["train"]["optimizer"] == "adamw" and saved["train"]["devices"] == ["b"]
    with pytest.raises(TrainError, match="no training clips from device.*s4.*Pick one"):
        _run(tiny_data, tmp_path / "s4", TrainConfig(devices=("s4",), epochs=1, device="cpu"))


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(TrainError, match="asc data synth --preset tutorial"):
        train_base(tmp_path / "nowhere", tmp_path / "run", TrainConfig(epochs=1))
    with pytest.raises(TrainError, match="optimizer must be one of adam, adamw; got 'sgd'"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(TrainError, match=r"batch_size must be a whole number >= 1; got 0.*lr must be a number > 0; got -1"):
        TrainConfig(lr=-1.0, batch_size=0)
    with pytest.raises(TrainError, match="dir_p must be a probability"):
        TrainConfig(dir_p=1.5)


def test_cli_rejects_invalid_numbers_before_training(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from asc_utils.cli import main

    assert main(["train", "base", "--data-dir", str(tmp_path), "--out", str(tmp_path / "run"), "--lr", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid training settings: lr must be a number > 0; got -1.0")
    assert not (tmp_path / "run").exists()


def test_cli_train_and_eval_write_the_documented_files(tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from asc_utils.cli import main
    from asc_utils.labels import CLASSES, DEVICES

    run = tmp_path / "run"
    args = ["train", "base", "--data-dir", str(tiny_data), "--out", str(run), "--epochs", "1", "--batch-size", "13", "--device", "cpu"]
    assert main(args) == 0
    for name in ("config.json", "checkpoint.pt", "history.csv", "history.json", "model.pt"):
        assert (run / name).exists(), name
    assert main(args) == 2 and "--resume" in capsys.readouterr().err  # refuses to overwrite a run silently
    assert main(["train", "base", "--out", str(run), "--resume"]) == 0  # keeps the run's own settings and data folder
    assert "done: 1 epochs" in capsys.readouterr().out
    assert main(["eval", "--run", str(run), "--device", "cpu"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    for precision in ("fp32", "fp16"):
        m = metrics[precision]
        assert set(m) == {"overall", "macro", "per_device", "per_group", "per_class"}
        assert list(m["per_device"]) == list(DEVICES) and list(m["per_group"]) == ["real", "seen", "unseen"]
        assert list(m["per_class"]) == list(CLASSES) and 0.0 <= m["macro"] <= 1.0
    assert metrics["info"]["split"] == "test"
    for name in ("predictions.csv", "training_curves.png", "confusion_matrices.png", "device_accuracy.png"):
        assert (run / name).stat().st_size > 0, name
    assert main(["eval", "--run", str(tmp_path / "nothing")]) == 2 and "not a training run" in capsys.readouterr().err
