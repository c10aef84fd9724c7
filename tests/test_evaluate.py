"""Evaluation metrics against a hand-computed example, confusion matrices, predictors (fp16 / per-device models)."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from torch import nn

from asc_utils.evaluate import accuracy_metrics, class_device_table, confusion_matrices, device_table, evaluate, make_predictor
from asc_utils.labels import CLASSES, DEVICES
from asc_utils.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


# 8 clips: device a (4 clips, 3 right), b (2 clips, 0 right), s4 (2 clips, 2 right); classes 0 (5 clips, 4 right), 1 (3 clips, 1 right)
LABELS = [0, 0, 0, 1, 0, 1, 0, 1]
PREDS = [0, 0, 0, 0, 1, 0, 0, 1]
DEVS = ["a", "a", "a", "a", "b", "b", "s4", "s4"]


def test_metrics_match_a_hand_computed_example() -> None:
    m = accuracy_metrics(LABELS, PREDS, DEVS)
    assert set(m) == {"overall", "macro", "per_device", "per_group", "per_class"}
    assert m["overall"] == pytest.approx(5 / 8)
    assert m["per_class"]["airport"] == pytest.approx(4 / 5) and m["per_class"]["bus"] == pytest.approx(1 / 3)
    assert m["per_class"]["tram"] is None  # no clips: left out of the macro average
    assert m["macro"] == pytest.approx((4 / 5 + 1 / 3) / 2)  # != overall: the classes are unbalanced
    assert m["per_device"]["a"] == pytest.approx(3 / 4) and m["per_device"]["b"] == 0.0 and m["per_device"]["s4"] == 1.0
    assert m["per_device"]["c"] is None and list(m["per_device"]) == list(DEVICES)
    assert m["per_group"]["real"] == pytest.approx(3 / 6) and m["per_group"]["seen"] is None and m["per_group"]["unseen"] == 1.0


def test_tables_and_confusion_matrices() -> None:
    table = device_table(LABELS, PREDS, DEVS)
    assert table.loc["a", "clips"] == 4 and table.loc["a", "accuracy %"] == 75.0
    assert table.loc["a", "macro %"] == pytest.approx(100 * (1.0 + 0.0) / 2)  # class 0: 3/3, class 1: 0/1
    assert table.loc["all", "accuracy %"] == 62.5 and table.loc["real (a, b, c)", "clips"] == 6
    classes = class_device_table(LABELS, PREDS, DEVS)
    assert classes.loc["bus", "s4"] == 100.0 and np.isnan(classes.loc["tram", "all"]) and "c" not in classes
    cms = confusion_matrices(LABELS, PREDS, DEVS)
    assert set(cms) == {"a", "b", "s4", "all"}
    assert cms["a"].loc["bus", "airport"] == 1 and cms["all"].values.sum() == 8 and np.trace(cms["all"].values) == 5
    assert list(cms["all"].index) == list(CLASSES) == list(cms["all"].columns)


def _arrays(n: int = 6) -> types.SimpleNamespace:
    g = torch.Generator().manual_seed(0)
    devices = ["a", "b", "c", "s1", "s4", "zz"][:n]
    return types.SimpleNamespace(waves=(0.1 * torch.randn(n, 44_100, generator=g)).numpy(), labels=np.arange(n) % 10,
                                 devices=devices, filenames=[f"audio/{i}.wav" for i in range(n)])


def test_fp16_evaluation_is_close_to_fp32_and_leaves_the_model_alone() -> None:
    torch.manual_seed(0)
    model = build_model().eval()
    arrays = _arrays()
    result = evaluate(model, arrays, batch_size=4, progress=False)
    assert result.precisions == ["fp32", "fp16"]
    assert np.abs(result.logits["fp32"] - result.logits["fp16"]).max() < 0.05
    assert next(model.parameters()).dtype == torch.float32  # model.half() was applied to a copy
    assert list(result.predictions.columns) == ["filename", "device", "label", "pred_fp32", "pred_fp16"]
    assert list(result.metrics("fp16")["per_device"])[-1] == "zz"  # unknown devices are reported after a..s6


def test_fp32_on_cpu_uses_the_fast_path_with_the_eager_logits(monkeypatch) -> None:
    """evaluate's CPU fp32 pass runs the folded network; its logits equal the eager model's up to float rounding."""
    from asc_utils import speed

    original, built = speed.for_inference, []

    def recording(net: nn.Module) -> nn.Module:
        built.append(original(net))
        return built[-1]

    monkeypatch.setattr(speed, "for_inference", recording)
    torch.manual_seed(0)
    model = build_model()
    model.train()
    for _ in range(3):  # give BatchNorm non-trivial running statistics, as a trained network has
        model(torch.randn(8, 1, 256, 33))
    model.eval()
    arrays = _arrays()
    result = evaluate(model, arrays, batch_size=4, precisions=("fp32",), progress=False)
    with torch.inference_mode():
        from asc_utils.features import FrontendConfig, LogMelFrontend

        eager = model(LogMelFrontend(FrontendConfig()).eval()(torch.from_numpy(arrays.waves))).numpy()
    assert [type(net).__name__ for net in built] == ["FastSNTL"]
    assert np.abs(result.logits["fp32"] - eager).max() < 1e-3
    assert (result.logits["fp32"].argmax(1) == eager.argmax(1)).all()
    plain = evaluate(model, arrays, batch_size=4, precisions=("fp32",), progress=False, fast=False)
    assert len(built) == 1, "fast=False must not use the speed layer"
    assert np.abs(plain.logits["fp32"] - eager).max() < 1e-4


class DeviceBias(nn.Module):
    """A toy per-device model: predicts the class given by the device's position in DEVICES (unknown -> class 9)."""

    def forward(self, x: torch.Tensor, devices: list[str]) -> torch.Tensor:
        index = torch.tensor([DEVICES.index(d) if d in DEVICES else 9 for d in devices])
        return nn.functional.one_hot(index, 10).to(x.dtype) + 0 * x.mean(dim=(1, 2, 3), keepdim=False)[:, None]


def test_models_and_predictors_that_route_by_device() -> None:
    arrays = _arrays()
    result = evaluate(DeviceBias(), arrays, batch_size=4, progress=False)
    assert result.predictions["pred_fp16"].tolist() == [0, 1, 2, 3, 6, 9]
    assert result.logits["fp16"].dtype == np.float32
    custom = evaluate({"mine": lambda waves, devices: torch.zeros(len(devices), 10)}, arrays, progress=False)
    assert custom.precisions == ["mine"] and custom.metrics("mine")["per_class"]["airport"] == 1.0
    predictor = make_predictor(DeviceBias(), half=True)
    assert predictor(torch.zeros(2, 44_100), ["c", "s9"]).argmax(1).tolist() == [2, 9]
