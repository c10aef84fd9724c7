"""The multi-device model of stage 2: one general network plus one fine-tuned copy per training device, in one file.

DCASE2025 Task 1 gives the recording device id with every test clip, so a system may hold a separate network per
device. `MultiDeviceModel.forward(x, devices)` routes every example of a batch to the network of its device: the batch
is grouped by device (one forward pass per device present, not one per example) and the results are put back in the
original order. Devices without a network of their own (the unseen s4-s6, s7-s10, anything unknown) use the general model.
Device ids are case-insensitive ('A' is device 'a'). An id that is neither a DCASE2025 device (a, b, c, s1-s10) nor one of
the model's own devices (e.g. 'xyz', '') is most likely a mistake in the input list: it still uses the general model, and
each call warns once (`UnknownDeviceWarning`), listing those ids.
Each device network is a complete model: the DCASE complexity limits apply to each of them on its own.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from asc_utils.features import FrontendConfig
from asc_utils.labels import DCASE_COMPLEXITY_DEVICES

FILE_FORMAT = "asc-multidevice-v1"  # the "format" entry of a saved file
GENERAL = "general"  # the key of the general model in device -> model mappings
KNOWN_DEVICES = DCASE_COMPLEXITY_DEVICES  # the device ids of DCASE2025 (a, b, c, s1-s10): no warning for these


class UnknownDeviceWarning(UserWarning):
    """Device ids that are neither DCASE2025 devices nor devices of the model; their clips use the general model."""


def normalise_device_id(device_id: object) -> object:
    """The form device ids are compared in: lower case without surrounding spaces ('A ' -> 'a'); non-strings unchanged."""
    return device_id.strip().lower() if isinstance(device_id, str) else device_id


class MultiDeviceModel(nn.Module):
    """A general network plus one network per device; forward(log-mel [B, 1, F, T], devices) -> logits [B, classes]."""

    def __init__(self, general: nn.Module, device_models: Mapping[str, nn.Module] | None = None, *,
                 model_name: str = "sntl_task1_2", frontend_config: FrontendConfig | None = None) -> None:
        super().__init__()
        device_models = dict(device_models or {})
        if any(normalise_device_id(d) == GENERAL for d in device_models):
            raise ValueError(f"'{GENERAL}' is reserved for the general model; it cannot also be a device id.")
        normalised = [normalise_device_id(d) for d in device_models]
        clashes = sorted({d for d in device_models if normalised.count(normalise_device_id(d)) > 1})
        if clashes:
            raise ValueError(f"Device ids are case-insensitive, but {clashes} name the same device; give one network per device.")
        self.general = general
        self.device_models = nn.ModuleDict(device_models)
        self.model_name = model_name  # the asc_utils.models.build_model name of every network in here
        self.frontend_config = frontend_config or FrontendConfig()  # the log-mel settings the networks were trained with

    @property
    def devices(self) -> tuple[str, ...]:
        """The device ids that have a network of their own."""
        return tuple(self.device_models.keys())

    def _keys(self) -> dict[object, str]:
        """Normalised device id -> key in device_models."""
        return {normalise_device_id(d): d for d in self.device_models}

    def unknown_devices(self, device_ids: Iterable[object]) -> list[object]:
        """The distinct ids (as given, in order) that are neither DCASE2025 devices nor devices of this model."""
        known = set(KNOWN_DEVICES) | set(self._keys())
        return list(dict.fromkeys(d for d in device_ids if normalise_device_id(d) not in known))

    def warn_unknown_devices(self, device_ids: Iterable[object]) -> list[object]:
        """Warn once (UnknownDeviceWarning) when some ids are unknown (see `unknown_devices`); return those ids."""
        device_ids = list(device_ids)
        unknown = self.unknown_devices(device_ids)
        if unknown:
            unknown_forms = {normalise_device_id(u) for u in unknown}
            clips = sum(normalise_device_id(d) in unknown_forms for d in device_ids)
            count = f" ({clips} of {len(device_ids)} clips)" if len(device_ids) > 1 else ""
            own = f" or this model's devices {list(self.devices)}" if set(self._keys()) - set(KNOWN_DEVICES) else ""
            warnings.warn(
                f"Unknown device id(s) {unknown[:10]}{' ...' if len(unknown) > 10 else ''}{count}: "
                f"expected the DCASE2025 ids {', '.join(KNOWN_DEVICES)}{own} (case-insensitive). These clips use the general "
                "model; check the device_id column of the input list.", UnknownDeviceWarning, stacklevel=3)
        return unknown

    def _key_for(self, device_id: object, keys: Mapping[object, str]) -> str:
        """The device_models key handling a device id, or GENERAL."""
        return keys.get(normalise_device_id(device_id), GENERAL)

    def get_model_for_device(self, device_id: str) -> nn.Module:
        """The network for a device id (case-insensitive): its fine-tuned copy, or the general model for devices without one.

        Unseen DCASE2025 devices (e.g. 's9') use the general model silently; an unknown id (e.g. 'xyz') warns.
        """
        self.warn_unknown_devices([device_id])
        return self._network(self._key_for(device_id, self._keys()))

    def forward(self, x: torch.Tensor, devices: Sequence[str], warn_unknown: bool = True) -> torch.Tensor:
        """Route each example to its device's network: one forward pass per device group, results in the input order.

        Device ids are case-insensitive; unknown ids use the general model and warn once per call (unless `warn_unknown`
        is False, for callers that checked the whole input list already).
        """
        if isinstance(devices, str) or len(devices) != x.shape[0]:
            found = "a single string" if isinstance(devices, str) else f"{len(devices)} device ids"
            raise ValueError(f"Expected one device id per example ({x.shape[0]} examples in the batch), got {found}. "
                             "Pass a list such as ['a', 'b', ...].")
        if warn_unknown:
            self.warn_unknown_devices(devices)
        keys = self._keys()
        groups: dict[str, list[int]] = {}  # network key -> positions in the batch, in order of first appearance
        for i, device in enumerate(devices):
            groups.setdefault(self._key_for(device, keys), []).append(i)
        if len(groups) == 1:  # the common case in evaluation: a whole batch from one device
            return self._network(next(iter(groups)))(x)
        out = None
        for key, positions in groups.items():
            index = torch.tensor(positions, device=x.device)
            logits = self._network(key)(x.index_select(0, index))
            if out is None:
                out = logits.new_empty((x.shape[0],) + tuple(logits.shape[1:]))
            out[index] = logits
        return out

    def _network(self, key: str) -> nn.Module:
        return self.general if key == GENERAL else self.device_models[key]

    def save(self, path: str | os.PathLike, extra: Mapping | None = None) -> Path:
        """Write everything (every network's weights, model name, front-end settings, `extra` info) into one file, atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        content = {
            "format": FILE_FORMAT,
            "model_name": self.model_name,
            "frontend": self.frontend_config.to_dict(),
            "general": self.general.state_dict(),
            "devices": {device: model.state_dict() for device, model in self.device_models.items()},
            "extra": json.loads(json.dumps(dict(extra or {}))),  # plain JSON types only: the file loads with weights_only=True
        }
        tmp = path.with_name(path.name + ".tmp")
        torch.save(content, tmp)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> MultiDeviceModel:
        """Read a file written by `save` (on the CPU, in eval mode, weights at the dtype they were saved with)."""
        content = read_multidevice_file(path)
        return from_content(content, source=str(path))


def read_multidevice_file(path: str | os.PathLike) -> dict:
    """The raw content of a multi-device file, with clear errors for a missing or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Multi-device model file not found: '{path}'. Expected the multidevice.pt written by "
                                "`asc train devices` (or MultiDeviceModel.save).")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise ValueError(f"Could not read '{path}' as a PyTorch file: {exc}. Expected a multidevice.pt written by "
                         "`asc train devices`; re-create it (the run folder keeps every device's model.pt).") from exc
    if not is_multidevice_content(content):
        raise ValueError(f"'{path}' is not a multi-device model file (no format entry '{FILE_FORMAT}'). "
                         "Use asc_utils.inference.load_model for other kinds of weight files.")
    return content


def is_multidevice_content(content: object) -> bool:
    """True when an object loaded with torch.load is the content of a multi-device file."""
    return isinstance(content, Mapping) and content.get("format") == FILE_FORMAT


def from_content(content: Mapping, source: str = "the file") -> MultiDeviceModel:
    """Build the MultiDeviceModel described by a loaded multi-device file (CPU, eval mode)."""
    from asc_utils.models import build_model
    from asc_utils.pretrained import check_state_dict

    def network(state: Mapping[str, torch.Tensor], what: str) -> nn.Module:
        model = build_model(content["model_name"])
        try:
            check_state_dict(model, state)
        except ValueError as exc:
            raise ValueError(f"{what} in {source}: {exc}") from exc
        dtype = next((v.dtype for v in state.values() if torch.is_floating_point(v)), torch.float32)
        model.to(dtype).load_state_dict(state)
        return model

    general = network(content["general"], "the general model")
    devices = {device: network(state, f"the model of device '{device}'") for device, state in content["devices"].items()}
    frontend = FrontendConfig(**content["frontend"])
    return MultiDeviceModel(general, devices, model_name=content["model_name"], frontend_config=frontend).eval()


def from_general(general: nn.Module, devices: Sequence[str], **kwargs) -> MultiDeviceModel:
    """A MultiDeviceModel whose device networks all start as independent copies of `general` (the start of fine-tuning)."""
    return MultiDeviceModel(general, {device: copy.deepcopy(general) for device in devices}, **kwargs)
