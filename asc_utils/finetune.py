"""Stage 2 of the recipe: fine-tune a copy of the general model on each training device's clips (the DCASE2025 baseline way).

The general model comes from a finished stage-1 run folder (`asc train base`). For each training device in turn, ALL
parameters of a fresh copy are trained on that device's clips of the same split with the stage-2 settings (`asc_utils.recipe.STAGE2_SETTINGS`), by the
same loop as stage 1 (`asc_utils.train.fit`). A run folder of `asc train devices` holds:

    config.json              kind "devices": base run, data folder, devices, the stage-2 settings
    devices/<id>/            one `fit` run per device (config.json, checkpoint.pt, history.csv/json, model.pt when done)
    multidevice.pt           the general model + every device model in one file (written when all devices are done)

A device whose model.pt exists is finished; `resume=True` (`--resume`) skips it, continues an interrupted device from
its checkpoint and starts a device without one again. Without `resume` the new run replaces a run in out_dir as a whole
(deleted once the first device has written its first checkpoint, put back when the new run fails before that;
`asc_utils.runs.replace_run`), and one process at a time trains into a folder (`asc_utils.runs.lock_run`). `asc eval` on
such a folder evaluates the multi-device model and its general model alone, side by side (`asc_utils.evaluate.evaluate_run`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from asc_utils import runs
from asc_utils.data import load_split_arrays
from asc_utils.features import FrontendConfig
from asc_utils.labels import TRAIN_DEVICES
from asc_utils.multidevice import MultiDeviceModel
from asc_utils.paths import default_data_dir
from asc_utils.recipe import STAGE2_SETTINGS, TrainConfig, TrainError, finetune_config
from asc_utils.train import fit

__all__ = ["STAGE2_SETTINGS", "FinetuneResult", "finetune_config", "finetune_devices"]


@dataclass
class FinetuneResult:
    """What finetune_devices returns: the multi-device model (fp32), each device's training history, the run folder."""

    model: MultiDeviceModel
    histories: dict[str, list[dict]]
    out_dir: Path


def finetune_devices(base_run: str | Path, out_dir: str | Path, data_dir: str | Path | None = None,
                     devices: tuple[str, ...] = TRAIN_DEVICES, *, resume: bool = False, progress: bool = True,
                     fast: bool = True, **overrides: Any) -> FinetuneResult:
    """Fine-tune one copy of the base run's general model per device; write every device run and multidevice.pt into out_dir.

    `overrides` change stage-2 settings for every device (e.g. epochs=5, device="cpu"); `data_dir` defaults to the
    folder the base run was trained on. Without `resume`, every device starts again from the general model.
    `fast=False` trains without the speed layer (see `asc_utils.train.fit`).
    """
    base_run, out_dir = Path(base_run), Path(out_dir)
    base_info = runs.read_config(base_run)
    if runs.run_kind(base_info) != "base":
        raise TrainError(f"{base_run} is a run of kind {base_info.get('kind')!r}; --base needs a stage-1 run of `asc train base`.")
    if out_dir.resolve() == base_run.resolve() or out_dir.resolve() in base_run.resolve().parents:
        raise TrainError(f"--out {out_dir} would hold the base run {base_run} (the stage-2 run replaces its folder's content); "
                         "choose an --out folder outside the base run.")
    general, base_config = runs.load_base_model(base_run)
    data_dir = Path(data_dir or base_info.get("data_dir") or default_data_dir())
    if not (data_dir / "meta.csv").exists():
        raise TrainError(f"no TAU22 data set at {data_dir} (no meta.csv); pass the data folder the base run was trained on.")
    template = finetune_config(base_config, devices[0], **overrides).to_dict()
    run_info = {
        "kind": "devices",
        "base_run": str(base_run.resolve()),
        "data_dir": str(data_dir.resolve()),
        "devices": list(devices),
        "stage2": {k: v for k, v in template.items() if k != "devices"},
        "frontend": base_info["frontend"],
        "speed_layer": fast,
    }

    def run_devices(on_checkpoint: Callable[[], None] | None) -> FinetuneResult:
        arrays = load_split_arrays(data_dir, base_config.split, progress=progress)
        models, histories = {}, {}
        bar = tqdm(devices, desc="devices", unit="device", disable=not progress)
        for device in bar:
            bar.set_postfix(device=device)
            models[device], histories[device] = _finetune_one(general, arrays, finetune_config(base_config, device, **overrides),
                                                              runs.device_run_dir(out_dir, device), resume, progress, run_info,
                                                              fast, on_checkpoint)
        model = MultiDeviceModel(general, models, model_name=base_config.model,
                                 frontend_config=FrontendConfig(**run_info["frontend"]))
        model.save(out_dir / runs.MULTIDEVICE, extra=run_info)
        return FinetuneResult(model.eval(), histories, out_dir)

    with runs.lock_run(out_dir):
        if resume:
            _check_same_devices_run(out_dir, run_info, base_run)
            return run_devices(None)
        with runs.replace_run(out_dir) as replacement:
            created = datetime.now(timezone.utc).isoformat(timespec="seconds")
            runs.write_config(out_dir, {**run_info, "torch": torch.__version__, "created": created})
            return run_devices(replacement.commit)


def _check_same_devices_run(out_dir: Path, run_info: dict, base_run: Path) -> None:
    """Before resuming: out_dir must hold the same fine-tuning run (an error that says what it holds otherwise)."""
    saved = runs.require_resumable(out_dir, "devices", base_run)
    wanted, found = _resume_key(run_info), _resume_key(saved)
    diff = sorted(k for k in wanted if found[k] != wanted[k])
    if diff:
        raise TrainError(f"{out_dir} holds a different run ({', '.join(diff)} differ); resume with the same "
                         "--base and settings, or choose another --out folder.")


def _resume_key(info: dict) -> dict:
    """The parts of a devices run's config.json that must match to resume it (the machine, `device`, may change)."""
    return {"kind": info.get("kind"), "base_run": info.get("base_run"), "devices": info.get("devices"),
            "stage2": {**info.get("stage2", {}), "device": None}}


def _finetune_one(general: torch.nn.Module, arrays: Any, config: TrainConfig, dev_dir: Path, resume: bool, progress: bool,
                  run_info: dict, fast: bool, on_checkpoint: Callable[[], None] | None) -> tuple[torch.nn.Module, list[dict]]:
    """Fine-tune (or, when resuming a finished device, load) one device's copy of the general model."""
    device = config.devices[0]
    if resume and (dev_dir / runs.MODEL).exists():
        model, saved = runs.load_base_model(dev_dir)
        if {**saved.to_dict(), "device": None} == {**config.to_dict(), "device": None}:
            if progress:
                tqdm.write(f"device {device}: already fine-tuned in {dev_dir}, skipped")
            return model, runs.read_history(dev_dir)
    continued = resume and (dev_dir / runs.CHECKPOINT).exists()  # else the device starts (again) from the general model
    if progress:
        tqdm.write(f"device {device}: {'continuing' if continued else 'fine-tuning'} all parameters for {config.epochs} epochs")
    info = {"kind": "device", "device": device, "base_run": run_info["base_run"], "data_dir": run_info["data_dir"]}
    after_epoch = (lambda row: on_checkpoint()) if on_checkpoint is not None else None
    result = fit(copy.deepcopy(general), arrays, config, dev_dir, resume=continued, info=info, progress=progress, fast=fast,
                 on_epoch_end=after_epoch)
    return result.model.cpu().eval(), result.history
