"""The run folder: the one place that knows which files a training run holds and how to read and write them.

A run of `asc train base` (kind "base") holds:

    config.json        what was run: kind, the TrainConfig, front-end settings, data folder, clips, speed layer on/off
    history.json/.csv  one row per finished epoch
    checkpoint.pt      everything needed to continue bit-exactly (written atomically after every epoch)
    model.pt           the final weights (state dict), written when training finished

A run of `asc train devices` (kind "devices") holds config.json, one base-kind run per device under devices/<id>/, and
multidevice.pt (the general model plus every device model in one file) when all devices are done. `asc eval` adds
metrics.json, predictions.csv and figures to either kind.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from asc_utils.features import FrontendConfig
from asc_utils.models import build_model
from asc_utils.multidevice import MultiDeviceModel
from asc_utils.recipe import TrainConfig, TrainError

CONFIG = "config.json"
HISTORY_JSON = "history.json"
HISTORY_CSV = "history.csv"
CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
MULTIDEVICE = "multidevice.pt"
METRICS = "metrics.json"
PREDICTIONS = "predictions.csv"
DEVICES_DIR = "devices"
HISTORY_COLUMNS = ("epoch", "loss", "train_acc", "lr", "seconds", "clips_per_s")
RUN_KINDS = ("base", "devices")


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call write(temporary path) and move the result onto `path` in one step: readers never see a half-written file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(path: str | os.PathLike, content: Any) -> Path:
    """Write `content` as indented JSON, atomically."""
    return atomic_write(path, lambda p: p.write_text(json.dumps(content, indent=2)))


def read_config(run_dir: str | os.PathLike) -> dict:
    """The config.json of a run folder, with a clear error when the folder is not a run."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise TrainError(f"{run_dir} is not a training run (no {CONFIG}); train one with `asc train base --out {run_dir}`.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise TrainError(f"{path} is not valid JSON ({exc}); the run folder is damaged. Train again into a new --out folder.") from exc


def write_config(run_dir: str | os.PathLike, info: dict) -> Path:
    """Write a run's config.json (atomically)."""
    return write_json(Path(run_dir) / CONFIG, info)


def run_kind(run: dict) -> str:
    """The kind of a run ('base' or 'devices') from its config.json content."""
    return run.get("kind", "base")


def read_history(run_dir: str | os.PathLike) -> list[dict]:
    """The per-epoch rows of a run (empty when no epoch has finished)."""
    path = Path(run_dir) / HISTORY_JSON
    return json.loads(path.read_text()) if path.is_file() else []


def write_history(run_dir: str | os.PathLike, history: list[dict]) -> None:
    """Write history.json and history.csv (atomically)."""
    run_dir = Path(run_dir)
    write_json(run_dir / HISTORY_JSON, history)
    atomic_write(run_dir / HISTORY_CSV, lambda p: pd.DataFrame(history, columns=list(HISTORY_COLUMNS)).to_csv(p, index=False))


def read_metrics(run_dir: str | os.PathLike) -> dict:
    """The metrics.json of an evaluated run, with a clear error when it has not been evaluated."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        raise TrainError(f"{run_dir} has no {METRICS}; evaluate the run first: `asc eval --run {run_dir}`.")
    return json.loads(path.read_text())


def save_checkpoint(run_dir: str | os.PathLike, state: dict) -> Path:
    """Write checkpoint.pt (atomically)."""
    return atomic_write(Path(run_dir) / CHECKPOINT, lambda p: torch.save(state, p))


def load_checkpoint(run_dir: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """The content of checkpoint.pt (our own file, which holds random-number states), with a clear error when damaged."""
    path = Path(run_dir) / CHECKPOINT
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises several types for a truncated or foreign file
        raise TrainError(f"could not read {path} ({type(exc).__name__}: {exc}); it is damaged or not a checkpoint of this "
                         f"project. Start the run again with --overwrite, or train into another --out folder.") from exc


def save_model(run_dir: str | os.PathLike, model: nn.Module) -> Path:
    """Write the final weights model.pt (atomically)."""
    return atomic_write(Path(run_dir) / MODEL, lambda p: torch.save(model.state_dict(), p))


def _load_state(path: Path, what: str) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, empty or foreign file
        raise TrainError(f"could not read {path} ({type(exc).__name__}: {exc}); {what}") from exc


def load_base_model(run_dir: str | os.PathLike) -> tuple[nn.Module, TrainConfig]:
    """The final model of a finished stage-1 run (in eval mode) and its config."""
    run_dir = Path(run_dir)
    run = read_config(run_dir)
    config = TrainConfig.from_dict(run["train"])
    weights = run_dir / MODEL
    if not weights.is_file():
        raise TrainError(f"{run_dir} has no {MODEL}: training did not finish. Continue it with "
                         f"`asc train base --out {run_dir} --resume`.")
    model = build_model(config.model)
    model.load_state_dict(_load_state(weights, f"the file is damaged. Re-create it: `asc train base --out {run_dir} --overwrite`."))
    return model.eval(), config


def load_devices_model(run_dir: str | os.PathLike) -> MultiDeviceModel:
    """The multi-device model of a finished `asc train devices` run (fp32, eval mode)."""
    run_dir = Path(run_dir)
    run = read_config(run_dir)
    if not (run_dir / MULTIDEVICE).is_file():
        raise TrainError(f"{run_dir} has no {MULTIDEVICE}: fine-tuning did not finish. Continue it with "
                         f"`asc train devices --base {run.get('base_run')} --out {run_dir} --resume` (same settings).")
    try:
        return MultiDeviceModel.load(run_dir / MULTIDEVICE).float()
    except ValueError as exc:
        raise TrainError(str(exc)) from exc


def load_run_model(run_dir: str | os.PathLike) -> tuple[nn.Module, FrontendConfig, dict]:
    """The model of a run folder of either kind, its front-end settings and the run's config.json content."""
    run = read_config(run_dir)
    kind = run_kind(run)
    if kind == "devices":
        model = load_devices_model(run_dir)
        return model, model.frontend_config, run
    if kind != "base":
        raise TrainError(f"{run_dir} holds a run of kind {kind!r}; expected one of {', '.join(RUN_KINDS)}.")
    model, _ = load_base_model(run_dir)
    return model, FrontendConfig(**run["frontend"]), run


def device_run_dir(run_dir: str | os.PathLike, device_id: str) -> Path:
    """The folder of one device's fine-tuning run inside a devices run."""
    return Path(run_dir) / DEVICES_DIR / device_id

