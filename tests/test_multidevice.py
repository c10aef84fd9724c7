"""The multi-device model: per-example routing by device id (grouped), fallback to the general model, one-file save/load."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pytest
import torch

from asc_utils.features import FrontendConfig
from asc_utils.models import build_model
from asc_utils.multidevice import MultiDeviceModel, UnknownDeviceWarning, from_general


def _net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = build_model("sntl_task1_2")
    for p in net.parameters():  # make the three networks clearly different
        p.data.add_(0.05 * torch.randn_like(p))
    return net.eval()


@pytest.fixture(scope="module")
def model() -> MultiDeviceModel:
    return MultiDeviceModel(_net(0), {"a": _net(1), "b": _net(2)}, frontend_config=FrontendConfig(n_mels=256)).eval()


@pytest.fixture(scope="module")
def mels() -> torch.Tensor:
    return torch.randn(7, 1, 256, 33, generator=torch.Generator().manual_seed(0))


def test_mixed_batch_equals_per_example_calls(model: MultiDeviceModel, mels: torch.Tensor) -> None:
    devices = ["b", "a", "s4", "b", "zz", "a", "b"]
    with torch.no_grad(), pytest.warns(UnknownDeviceWarning, match="zz"):
        batched = model(mels, devices)
        single = torch.cat([model.get_model_for_device(d)(mels[i : i + 1]) for i, d in enumerate(devices)])
    assert batched.shape == (7, 10)
    torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(batched[0], model.general(mels[:1])[0], atol=1e-3)  # 'b' really uses its own network


def test_one_forward_per_device_group(model: MultiDeviceModel, mels: torch.Tensor) -> None:
    calls: dict[str, list[int]] = {"general": [], "a": [], "b": []}
    nets = {"general": model.general, "a": model.device_models["a"], "b": model.device_models["b"]}
    hooks = [net.register_forward_hook(lambda m, inp, out, k=k: calls[k].append(inp[0].shape[0])) for k, net in nets.items()]
    try:
        with torch.no_grad(), pytest.warns(UnknownDeviceWarning):
            model(mels, ["b", "a", "s4", "b", "zz", "a", "b"])
    finally:
        for hook in hooks:
            hook.remove()
    assert calls == {"general": [2], "a": [2], "b": [3]}


def test_unknown_devices_fall_back_to_the_general_model(model: MultiDeviceModel, mels: torch.Tensor) -> None:
    assert model.devices == ("a", "b")
    for device in ("s4", "s7", "s10"):
        assert model.get_model_for_device(device) is model.general
    with pytest.warns(UnknownDeviceWarning):
        assert model.get_model_for_device("unknown") is model.general
    with torch.no_grad(), pytest.warns(UnknownDeviceWarning):
        torch.testing.assert_close(model(mels[:3], ["s5", "s6", "x"]), model.general(mels[:3]))


def test_device_ids_are_case_insensitive(model: MultiDeviceModel, mels: torch.Tensor) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownDeviceWarning)  # known ids in any case: no warning
        assert model.get_model_for_device("A") is model.device_models["a"]
        assert model.get_model_for_device(" B ") is model.device_models["b"]
        assert model.get_model_for_device("S9") is model.general
        with torch.no_grad():
            torch.testing.assert_close(model(mels[:4], ["A", "b", "B", "S4"]), model(mels[:4], ["a", "b", "b", "s4"]), rtol=0, atol=0)
    upper = MultiDeviceModel(_net(0), {"A": _net(1)})  # keys in another case work too
    assert upper.get_model_for_device("a") is upper.device_models["A"]
    with pytest.raises(ValueError, match="case-insensitive"):
        MultiDeviceModel(_net(0), {"a": _net(1), "A": _net(2)})


def test_unknown_device_ids_warn_once_per_call(model: MultiDeviceModel, mels: torch.Tensor) -> None:
    with torch.no_grad(), pytest.warns(UnknownDeviceWarning) as record:
        logits = model(mels[:5], ["xyz", "a", "", "xyz", "s9"])
    assert len(record) == 1, "one warning per call, not one per clip"
    message = str(record[0].message)
    assert "['xyz', '']" in message and "3 of 5 clips" in message and "s9" not in message.split("expected")[0]
    with torch.no_grad():
        torch.testing.assert_close(logits[[0, 2, 3]], model.general(mels[[0, 2, 3]]), rtol=1e-4, atol=1e-4)
    assert model.unknown_devices(["a", "S10", "xyz", "XYZ", ""]) == ["xyz", "XYZ", ""]


def test_gradients_reach_only_the_networks_used(mels: torch.Tensor) -> None:
    fresh = from_general(_net(3), ["a", "b"])
    fresh(mels[:4], ["a", "s1", "a", "s2"]).sum().backward()
    assert fresh.device_models["a"].stem.conv.weight.grad.abs().sum() > 0
    assert fresh.general.stem.conv.weight.grad.abs().sum() > 0
    assert fresh.device_models["b"].stem.conv.weight.grad is None


def test_save_and_load_round_trip(model: MultiDeviceModel, mels: torch.Tensor, tmp_path: Path) -> None:
    path = model.save(tmp_path / "sub" / "multidevice.pt", extra={"note": "test"})
    loaded = MultiDeviceModel.load(path)
    assert loaded.devices == ("a", "b") and loaded.model_name == "sntl_task1_2"
    assert loaded.frontend_config == model.frontend_config and not loaded.training
    devices = ["a", "b", "s9", "a"]
    with torch.no_grad():
        torch.testing.assert_close(loaded(mels[:4], devices), model(mels[:4], devices), rtol=0, atol=0)
    half = MultiDeviceModel.load(copy.deepcopy(model).half().save(tmp_path / "half.pt"))
    assert next(half.device_models["b"].parameters()).dtype == torch.float16


def test_errors_are_explained(model: MultiDeviceModel, mels: torch.Tensor, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="one device id per example"):
        model(mels[:3], ["a", "b"])
    with pytest.raises(ValueError, match="single string"):
        model(mels[:1], "a")
    with pytest.raises(ValueError, match="reserved"):
        MultiDeviceModel(_net(0), {"general": _net(1)})
    with pytest.raises(FileNotFoundError, match="asc train devices"):
        MultiDeviceModel.load(tmp_path / "missing.pt")
    torch.save(build_model().state_dict(), tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="not a multi-device model file"):
        MultiDeviceModel.load(tmp_path / "plain.pt")
