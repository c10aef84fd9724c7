"""Stage 2 of the recipe: fine-tune a copy of the general model on each training device's clips (the DCASE2025 baseline way).

The general model comes from a finished stage-1 run folder (`asc train base`). For each training device in turn, ALL
parameters of a fresh copy are trained on that device's clips of the same split with the stage-2 settings below, by the
same loop as stage 1 (`asc_utils.train.fit`). A run folder of `asc train devices` holds:

    config.json              kind "devices": base run, data folder, devices, the stage-2 settings
    devices/<id>/            one `fit` run per device (config.json, checkpoint.pt, history.csv/json, model.pt when done)
    multidevice.pt           the general model + every device model in one file (written when all devices are done)

A device whose model.pt exists is finished; `resume=True` (`--resume`) skips it and continues an interrupted device from
its checkpoint. `asc eval` on such a folder evaluates the multi-device model (metrics.json keys fp32 / fp16 as for every
run), its general model alone (general_fp32 / general_fp16), and writes the side-by-side comparison under
"device_vs_general" (see `comparison_metrics`).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from asc_utils.features import FrontendConfig, LogMelFrontend
from asc_utils.labels import TRAIN_DEVICES
from asc_utils.multidevice import MultiDeviceModel
from asc_utils.train import TrainConfig, TrainError, fit, load_base_model, load_run_config

MULTIDEVICE_FILE = "multidevice.pt"

# Stage-2 settings (official DCASE2025 baseline; recipe.md "Stage 2"). Anything not listed keeps the base run's value.
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


@dataclass
class FinetuneResult:
    """What finetune_devices returns: the multi-device model (fp32), each device's training history, the run folder."""

    model: MultiDeviceModel
    histories: dict[str, list[dict]]
    out_dir: Path


def finetune_devices(base_run: str | Path, out_dir: str | Path, data_dir: str | Path | None = None,
                     devices: tuple[str, ...] = TRAIN_DEVICES, *, resume: bool = False, progress: bool = True,
                     **overrides: Any) -> FinetuneResult:
    """Fine-tune one copy of the base run's general model per device; write every device run and multidevice.pt into out_dir.

    `overrides` change stage-2 settings for every device (e.g. epochs=5, device="cpu"); `data_dir` defaults to the
    folder the base run was trained on. Without `resume`, every device starts again from the general model.
    """
    from asc_utils.data import load_split_arrays
    from asc_utils.paths import default_data_dir

    base_run, out_dir = Path(base_run), Path(out_dir)
    base_info = load_run_config(base_run)
    if base_info.get("kind", "base") != "base":
        raise TrainError(f"{base_run} is a run of kind {base_info.get('kind')!r}; --base needs a stage-1 run of `asc train base`.")
    general, base_config = load_base_model(base_run)
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
    }
    _start_run_folder(out_dir, run_info, resume)
    arrays = load_split_arrays(data_dir, base_config.split, progress=progress)
    models, histories = {}, {}
    bar = tqdm(devices, desc="devices", unit="device", disable=not progress)
    for device in bar:
        bar.set_postfix(device=device)
        models[device], histories[device] = _finetune_one(general, arrays, finetune_config(base_config, device, **overrides),
                                                          out_dir / "devices" / device, resume, progress, run_info)
    model = MultiDeviceModel(general, models, model_name=base_config.model, frontend_config=FrontendConfig(**run_info["frontend"]))
    model.save(out_dir / MULTIDEVICE_FILE, extra=run_info)
    return FinetuneResult(model.eval(), histories, out_dir)


def _start_run_folder(out_dir: Path, run_info: dict, resume: bool) -> None:
    """Write config.json; when resuming, first check that the folder holds the same fine-tuning run."""
    path = out_dir / "config.json"
    if resume and path.exists():
        saved = json.loads(path.read_text())
        wanted, found = _resume_key(run_info), _resume_key(saved)
        diff = sorted(k for k in wanted if found[k] != wanted[k])
        if diff:
            raise TrainError(f"{out_dir} holds a different run ({', '.join(diff)} differ); resume with the same "
                             "--base and settings, or choose another --out folder.")
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MULTIDEVICE_FILE).unlink(missing_ok=True)
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    path.write_text(json.dumps({**run_info, "torch": torch.__version__, "created": created}, indent=2))


def _resume_key(info: dict) -> dict:
    """The parts of a devices run's config.json that must match to resume it (the machine, `device`, may change)."""
    return {"kind": info.get("kind"), "base_run": info.get("base_run"), "devices": info.get("devices"),
            "stage2": {**info.get("stage2", {}), "device": None}}


def _finetune_one(general: torch.nn.Module, arrays: Any, config: TrainConfig, dev_dir: Path, resume: bool,
                  progress: bool, run_info: dict) -> tuple[torch.nn.Module, list[dict]]:
    """Fine-tune (or, when resuming a finished device, load) one device's copy of the general model."""
    device = config.devices[0]
    if resume and (dev_dir / "model.pt").exists():
        saved = TrainConfig.from_dict(json.loads((dev_dir / "config.json").read_text())["train"])
        if {**saved.to_dict(), "device": None} == {**config.to_dict(), "device": None}:
            model = copy.deepcopy(general)
            model.load_state_dict(torch.load(dev_dir / "model.pt", map_location="cpu", weights_only=True))
            if progress:
                tqdm.write(f"device {device}: already fine-tuned in {dev_dir}, skipped")
            return model.eval(), json.loads((dev_dir / "history.json").read_text())
    if progress:
        tqdm.write(f"device {device}: fine-tuning all parameters for {config.epochs} epochs")
    info = {"kind": "device", "device": device, "base_run": run_info["base_run"], "data_dir": run_info["data_dir"]}
    result = fit(copy.deepcopy(general), arrays, config, dev_dir, resume=resume, info=info, progress=progress)
    return result.model.cpu().eval(), result.history


def load_devices_run(run_dir: str | Path) -> tuple[MultiDeviceModel, FrontendConfig, dict]:
    """The multi-device model of a finished `asc train devices` run (fp32, eval mode), its front-end settings and config."""
    run_dir = Path(run_dir)
    run = load_run_config(run_dir)
    if not (run_dir / MULTIDEVICE_FILE).exists():
        raise TrainError(f"{run_dir} has no {MULTIDEVICE_FILE}: fine-tuning did not finish. Continue it with "
                         f"`asc train devices --base {run.get('base_run')} --out {run_dir} --resume` (same settings).")
    model = MultiDeviceModel.load(run_dir / MULTIDEVICE_FILE).float()
    return model, model.frontend_config, run


@torch.inference_mode()
def evaluate_devices(model: MultiDeviceModel, arrays: Any, device: str | torch.device = "cpu", batch_size: int = 256,
                     precisions: tuple[str, ...] = ("fp32", "fp16"), progress: bool = True) -> Any:
    """Evaluate the multi-device model (keys 'fp32', 'fp16') and its general model alone ('general_fp32', 'general_fp16').

    One pass over the clips: the log-mel is computed once (fp32, cast to half for fp16 as in the challenge); the general
    model sees every clip, a device model only its own device's clips (for the others both models are the same network).
    """
    from asc_utils.evaluate import Evaluation

    device = torch.device(device)
    frontend = LogMelFrontend(model.frontend_config).to(device).eval()
    nets = {p: (copy.deepcopy(model).half() if p == "fp16" else copy.deepcopy(model).float()).to(device).eval() for p in precisions}
    logits: dict[str, list] = {f"{prefix}{p}": [] for prefix in ("", "general_") for p in precisions}
    n = len(arrays.labels)
    for start in tqdm(range(0, n, batch_size), desc="evaluate", disable=not progress, leave=False):
        waves = torch.from_numpy(np.asarray(arrays.waves[start : start + batch_size], dtype=np.float32)).to(device)
        ids = list(arrays.devices[start : start + batch_size])
        mel = frontend(waves)
        own = [i for i, d in enumerate(ids) if d in model.device_models]
        for precision, net in nets.items():
            x = mel.half() if precision == "fp16" else mel
            general = net.general(x).float().cpu()
            specific = general.clone()
            if own:
                specific[own] = net(x[own], [ids[i] for i in own]).float().cpu()
            logits[f"general_{precision}"].append(general.numpy())
            logits[precision].append(specific.numpy())
    frame = pd.DataFrame({"filename": list(arrays.filenames), "device": list(arrays.devices),
                          "label": np.asarray(arrays.labels, dtype=np.int64)})
    stacked = {name: np.concatenate(parts) for name, parts in logits.items()}
    for name, values in stacked.items():
        frame[f"pred_{name}"] = values.argmax(1)
    return Evaluation(frame, stacked)


def comparison_table(evaluation: Any, precision: str = "fp16") -> pd.DataFrame:
    """Accuracy (%) of the general model vs the device-specific models per device, group and overall, with the change."""
    general = evaluation.device_table(f"general_{precision}")
    specific = evaluation.device_table(precision)
    table = pd.DataFrame({
        "clips": specific["clips"],
        "general %": general["accuracy %"],
        "device-specific %": specific["accuracy %"],
        "change (pp)": (specific["accuracy %"] - general["accuracy %"]).round(2),
    })
    table.loc["macro (all)"] = [specific.loc["all", "clips"], general.loc["all", "macro %"], specific.loc["all", "macro %"],
                                round(specific.loc["all", "macro %"] - general.loc["all", "macro %"], 2)]
    return table


def comparison_metrics(evaluation: Any) -> dict:
    """The metrics.json block "device_vs_general": {precision: {overall, macro, per_device, per_group: {general, device_specific}}}."""
    out = {}
    for precision in [p for p in evaluation.precisions if not p.startswith("general_")]:
        general, specific = evaluation.metrics(f"general_{precision}"), evaluation.metrics(precision)
        block = {key: {"general": general[key], "device_specific": specific[key]} for key in ("overall", "macro")}
        for key in ("per_device", "per_group"):
            block[key] = {name: {"general": general[key][name], "device_specific": specific[key][name]} for name in specific[key]}
        out[precision] = block
    return out


def write_comparison(metrics_path: str | Path, evaluation: Any) -> pd.DataFrame:
    """Add "device_vs_general" to an existing metrics.json; return the fp16 comparison table (fp32 if fp16 was not run)."""
    path = Path(metrics_path)
    metrics = json.loads(path.read_text())
    metrics["device_vs_general"] = comparison_metrics(evaluation)
    path.write_text(json.dumps(metrics, indent=2))
    return comparison_table(evaluation, "fp16" if "fp16" in evaluation.precisions else evaluation.precisions[0])


def cli_train_devices(args: argparse.Namespace) -> int:
    """`asc train devices`: stage-2 fine-tuning of one model per training device, on top of a stage-1 run."""
    out = Path(args.out)
    if (out / "config.json").exists() and not (args.resume or args.overwrite):
        print(f"error: {out} already holds a run. Pass --resume to continue it or --overwrite to start again.", file=sys.stderr)
        return 2
    overrides = {k: getattr(args, k) for k in ("epochs", "batch_size", "lr", "seed", "device") if getattr(args, k) is not None}
    try:
        result = finetune_devices(args.base, out, args.data_dir, tuple(args.devices), resume=args.resume, **overrides)
    except (TrainError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for device, history in result.histories.items():
        print(f"device {device}: {len(history)} epochs, last loss {history[-1]['loss']:.4f}, train acc {history[-1]['train_acc']:.3f}")
    print(f"done: {out / MULTIDEVICE_FILE}. Next: asc eval --run {out}   (general vs device-specific side by side)")
    return 0

