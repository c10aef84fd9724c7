"""The training recipe: every setting of a run in one `TrainConfig` (defaults = the published stage-1 recipe), the stage-2
settings of device fine-tuning, the learning-rate schedule, and the choice of compute device."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from asc_utils.data.tau import TRAIN_SPLIT_NAMES
from asc_utils.errors import UserError
from asc_utils.features import FrontendConfig
from asc_utils.models import MODEL_NAMES

OPTIMIZERS: tuple[str, ...] = ("adam", "adamw")
COMPUTE_DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


class TrainError(UserError, ValueError):
    """A problem with the training inputs that the user can fix (bad setting, data folder, empty split, foreign run folder)."""


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class TrainConfig:
    """Every training setting in one place; the defaults are the published stage-1 recipe (general model, 25 % split)."""

    model: str = field(default="sntl_task1_2", metadata=_help("network to train"))
    split: str = field(default="split25", metadata=_help("training split"))
    devices: tuple[str, ...] | None = field(default=None, metadata=_help("train only on clips of these devices (None = all)"))
    epochs: int = field(default=150, metadata=_help("number of epochs"))
    batch_size: int = field(default=256, metadata=_help("clips per optimisation step"))
    optimizer: str = field(default="adam", metadata=_help("adam (stage 1) or adamw (stage 2)"))
    lr: float = field(default=0.002, metadata=_help("peak learning rate"))
    weight_decay: float = field(default=0.0, metadata=_help("weight decay of the optimiser"))
    warmup_steps: int = field(default=20, metadata=_help("optimisation steps of linear learning-rate warm-up"))
    num_cycles: float = field(default=0.4, metadata=_help("cosine cycles after warm-up (0.5 = a half cosine down to 0)"))
    grad_clip: float = field(default=0.5, metadata=_help("max global gradient norm; 0 = off"))
    mixstyle_p: float = field(default=0.4, metadata=_help("Frequency-MixStyle probability per batch; 0 = off"))
    mixstyle_alpha: float = field(default=0.3, metadata=_help("Beta(alpha, alpha) of Frequency-MixStyle's mixing weight"))
    freq_mask: int = field(default=48, metadata=_help("frequency masking: width limit in mel bins (one band of 0..N-1); 0 = off"))
    dir_p: float = field(default=0.4, metadata=_help("DIR augmentation probability on device-a clips; 0 = off"))
    dir_dir: str | None = field(default=None, metadata=_help("folder of measured impulse responses "
                                                             "(default: the MicIRP download if present, else generated)"))
    time_roll: int = field(default=0, metadata=_help("circular shift by up to +-N samples; 0 = off"))
    seed: int = field(default=0, metadata=_help("random seed"))
    device: str = field(default="auto", metadata=_help("where to train: auto = CUDA if available"))

    def __post_init__(self) -> None:
        if self.devices is not None and not isinstance(self.devices, tuple):  # JSON gives a list back: keep configs comparable
            object.__setattr__(self, "devices", tuple(self.devices))
        problems = self.problems()
        if problems:
            raise TrainError("invalid training settings: " + "; ".join(problems) + ". Change them and run again.")

    def problems(self) -> list[str]:
        """Each setting outside its valid range, as 'name must be ...; got value'."""
        out = []

        def need(ok: bool, name: str, rule: str) -> None:
            if not ok:
                out.append(f"{name} must be {rule}; got {getattr(self, name)!r}")

        need(self.model in MODEL_NAMES, "model", "one of " + ", ".join(MODEL_NAMES))
        need(self.split in TRAIN_SPLIT_NAMES, "split", "one of " + ", ".join(TRAIN_SPLIT_NAMES))
        need(self.optimizer in OPTIMIZERS, "optimizer", "one of " + ", ".join(OPTIMIZERS))
        need(self.device in COMPUTE_DEVICES or self.device.startswith("cuda:"), "device", "auto, cpu, cuda or cuda:N")
        for name in ("epochs", "batch_size"):
            need(isinstance(getattr(self, name), int) and getattr(self, name) >= 1, name, "a whole number >= 1")
        for name in ("warmup_steps", "freq_mask", "time_roll", "seed"):
            need(isinstance(getattr(self, name), int) and getattr(self, name) >= 0, name, "a whole number >= 0")
        for name in ("lr", "num_cycles", "mixstyle_alpha"):
            need(math.isfinite(getattr(self, name)) and getattr(self, name) > 0, name, "a number > 0")
        for name in ("weight_decay", "grad_clip"):
            need(math.isfinite(getattr(self, name)) and getattr(self, name) >= 0, name, "a number >= 0")
        for name in ("mixstyle_p", "dir_p"):
            need(0.0 <= getattr(self, name) <= 1.0, name, "a probability between 0 and 1")
        return out

    def to_dict(self) -> dict:
        """The settings as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Rebuild a config saved with to_dict (unknown keys are an error)."""
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise TrainError(f"unknown training setting(s) {unknown}; expected only the fields of TrainConfig. "
                             "Was the run written by another version of asc_utils?")
        return cls(**values)

    def frontend_config(self) -> FrontendConfig:
        """The shared front-end settings with this run's frequency-mask width."""
        return dataclasses.replace(FrontendConfig(), freq_mask=self.freq_mask)


# Stage-2 settings (official DCASE2025 baseline, device fine-tuning). Anything not listed keeps the base run's value.
STAGE2_SETTINGS: dict[str, Any] = {
    "epochs": 50,
    "batch_size": 256,
    "optimizer": "adamw",
    "lr": 5e-4,
    "weight_decay": 1e-4,
    "warmup_steps": 200,
    "num_cycles": 0.5,  # "then cosine": a plain half cosine from the peak down to 0
    "grad_clip": 0.0,  # the stage-2 recipe clips no gradients
    "mixstyle_p": 0.0,  # no Frequency-MixStyle: there is only one device to mix
    "freq_mask": 48,
    "dir_p": 0.0,  # no DIR augmentation: the model should specialise on the device's own response
    "time_roll": 4410,  # +-0.1 s at 44.1 kHz
}


def finetune_config(base: TrainConfig, device_id: str, **overrides: Any) -> TrainConfig:
    """The stage-2 TrainConfig of one recording device: base run's model, split and seed; STAGE2_SETTINGS; then `overrides`."""
    values = {**base.to_dict(), **STAGE2_SETTINGS, **overrides, "devices": (device_id,)}
    return TrainConfig(**values)


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, num_cycles: float = 0.4) -> float:
    """LR multiplier: linear warm-up step/warmup, then max(0, 0.5 * (1 + cos(pi * 2 * num_cycles * progress)))."""
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 2.0 * num_cycles * progress)))


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' without a GPU is an error that says so."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainError("--device cuda was requested but torch sees no CUDA GPU; use --device auto or --device cpu.")
    return torch.device(name)
