"""Evaluation as in DCASE: macro-average and overall accuracy, per class / device / device group, confusion matrices, fp16 and fp32.

Accuracies are fractions in [0, 1] (None where a device or class has no clips). `per_device` and `per_group` are the plain
accuracy over that device's (group's) clips; `macro` is the mean of the class-wise accuracies (the DCASE primary metric).
`asc eval` writes metrics.json as ``{"fp32": M, "fp16": M, "info": {...}}`` where each M has exactly the keys
``overall``, ``macro``, ``per_device`` (a..s6), ``per_group`` (real/seen/unseen) and ``per_class``. For a multi-device
model (stage 2) it adds ``general_fp32`` / ``general_fp16`` (its general model alone, on the same clips) and
``device_vs_general`` (the two side by side).

One loop (`evaluate`) serves every model: a plain network forward(x), or a MultiDeviceModel forward(x, devices). By default
fp32 on the CPU runs through the speed layer (`asc_utils.speed`: the same logits up to float rounding); `fast=False` runs
the readable modules.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from asc_utils import plots, runs, speed
from asc_utils.data import load_split_arrays
from asc_utils.features import FrontendConfig, LogMelFrontend
from asc_utils.labels import CLASSES, DEVICE_GROUPS, DEVICES
from asc_utils.multidevice import MultiDeviceModel
from asc_utils.paths import default_data_dir, shell_quote
from asc_utils.recipe import TrainError, resolve_device

# predict_logits(waves [B, N] float32 on the CPU, device ids) -> logits [B, 10]
Predictor = Callable[[torch.Tensor, list[str]], torch.Tensor]
PRECISIONS = ("fp32", "fp16")
EVAL_SPLITS = ("test", "split5", "split10", "split25", "split50", "split100")


def _frontend(config: FrontendConfig | None, device: torch.device, fast: bool) -> LogMelFrontend:
    """The eval-mode front end (the speed layer's when `fast`)."""
    frontend = LogMelFrontend(config or FrontendConfig())
    if fast:
        frontend = speed.fast_frontend(frontend)
    return frontend.to(device).eval()


def _prepare(model: nn.Module, device: torch.device, half: bool, fast: bool) -> tuple[nn.Module, bool]:
    """An eval-mode copy of the model on `device` (model.half() when half) and whether its forward takes device ids.

    With `fast`, fp32 on the CPU uses the speed layer's folded network (the same logits up to float rounding).
    """
    net = copy.deepcopy(model).to(device, memory_format=torch.contiguous_format).eval()
    if half:
        net = net.half()
    elif fast and device.type == "cpu":
        net = speed.for_inference(net)
    return net, "devices" in inspect.signature(net.forward).parameters


def _logits(net: nn.Module, takes_devices: bool, mel: torch.Tensor, devices: list[str], half: bool) -> torch.Tensor:
    """Run a prepared net on fp32 log-mels (cast to half first for an fp16 net, as in the challenge)."""
    mel = mel.half() if half else mel
    logits = net(mel, devices) if takes_devices else net(mel)
    return logits.float().cpu()


def make_predictor(model: nn.Module, frontend_config: FrontendConfig | None = None, device: str | torch.device = "cpu",
                   half: bool = False, fast: bool = True) -> Predictor:
    """Wrap a model on log-mels (forward(x) or forward(x, devices)) into a predictor; half=True evaluates a model.half() copy.

    As in the challenge, the front end stays in fp32 and only the log-mel is cast to half before the network.
    """
    device = torch.device(device)
    frontend = _frontend(frontend_config, device, fast)
    net, takes_devices = _prepare(model, device, half, fast)

    @torch.inference_mode()
    def predict(waves: torch.Tensor, devices: list[str]) -> torch.Tensor:
        return _logits(net, takes_devices, frontend(waves.to(device).float()), devices, half)

    return predict


def _batches(arrays: Any, batch_size: int, progress: bool, desc: str) -> Iterator[tuple[torch.Tensor, list[str]]]:
    n = len(arrays.labels)
    if n == 0:
        raise TrainError("the evaluation split holds no clips: expected at least one row in its split file under split_setup/ "
                         "of the data folder; check that file, or evaluate another split (--split).")
    for start in tqdm(range(0, n, batch_size), desc=desc, disable=not progress, leave=False):
        stop = min(start + batch_size, n)
        yield torch.from_numpy(np.asarray(arrays.waves[start:stop], dtype=np.float32)), list(arrays.devices[start:stop])


def predict_logits(predictor: Predictor, arrays: Any, batch_size: int = 256, progress: bool = True, desc: str = "predict") -> np.ndarray:
    """Logits [N, 10] for every clip of `arrays` (.waves [N, samples], .devices), in batches."""
    return np.concatenate([predictor(waves, devices).numpy() for waves, devices in _batches(arrays, batch_size, progress, desc)])


def _accuracy(correct: np.ndarray) -> float | None:
    return float(correct.mean()) if len(correct) else None


def _device_order(devices: np.ndarray) -> list[str]:
    return list(DEVICES) + sorted(set(devices.tolist()) - set(DEVICES))


def accuracy_metrics(labels: Any, preds: Any, devices: Any) -> dict:
    """The metrics.json block: overall, macro (mean class-wise accuracy), per_device, per_group, per_class."""
    labels, preds, devices = np.asarray(labels), np.asarray(preds), np.asarray(devices)
    correct = labels == preds
    per_class = {name: _accuracy(correct[labels == i]) for i, name in enumerate(CLASSES)}
    present = [v for v in per_class.values() if v is not None]
    return {
        "overall": _accuracy(correct),
        "macro": float(np.mean(present)) if present else None,
        "per_device": {d: _accuracy(correct[devices == d]) for d in _device_order(devices)},
        "per_group": {g: _accuracy(correct[np.isin(devices, members)]) for g, members in DEVICE_GROUPS.items()},
        "per_class": per_class,
    }


def device_table(labels: Any, preds: Any, devices: Any) -> pd.DataFrame:
    """One row per device, device group and 'all': clips, accuracy and macro accuracy (in %)."""
    labels, preds, devices = np.asarray(labels), np.asarray(preds), np.asarray(devices)
    groups = {d: [d] for d in _device_order(devices)} | {f"{g} ({', '.join(m)})": list(m) for g, m in DEVICE_GROUPS.items()}
    rows = []
    for name, members in {**groups, "all": sorted(set(devices.tolist()))}.items():
        keep = np.isin(devices, members)
        m = accuracy_metrics(labels[keep], preds[keep], devices[keep])
        rows.append({"": name, "clips": int(keep.sum()), "accuracy %": _pct(m["overall"]), "macro %": _pct(m["macro"])})
    return pd.DataFrame(rows).set_index("")


def class_device_table(labels: Any, preds: Any, devices: Any) -> pd.DataFrame:
    """Class-wise accuracy (%) per device: rows = classes (+ the macro average), columns = devices (+ 'all')."""
    labels, preds, devices = np.asarray(labels), np.asarray(preds), np.asarray(devices)
    table = {}
    for d in [*_device_order(devices), "all"]:
        keep = np.ones(len(labels), bool) if d == "all" else devices == d
        if keep.any():
            m = accuracy_metrics(labels[keep], preds[keep], devices[keep])
            table[d] = {**{c: _pct(v) for c, v in m["per_class"].items()}, "macro": _pct(m["macro"])}
    return pd.DataFrame(table)


def confusion_matrices(labels: Any, preds: Any, devices: Any) -> dict[str, pd.DataFrame]:
    """Confusion-matrix counts (rows = true class, columns = predicted) per device present, plus 'all'."""
    labels, preds, devices = np.asarray(labels), np.asarray(preds), np.asarray(devices)
    out = {}
    for d in [*_device_order(devices), "all"]:
        keep = np.ones(len(labels), bool) if d == "all" else devices == d
        if keep.any():
            counts = np.zeros((len(CLASSES), len(CLASSES)), dtype=np.int64)
            np.add.at(counts, (labels[keep], preds[keep]), 1)
            out[d] = pd.DataFrame(counts, index=pd.Index(CLASSES, name="true"), columns=pd.Index(CLASSES, name="predicted"))
    return out


def _pct(value: float | None) -> float:
    return float("nan") if value is None else round(100.0 * value, 2)


@dataclass
class Evaluation:
    """Predictions of one model on one split, per precision, with the tables computed from them."""

    predictions: pd.DataFrame  # filename, device, label, pred_<precision>...
    logits: dict[str, np.ndarray]

    @property
    def precisions(self) -> list[str]:
        """The precisions evaluated (e.g. ['fp32', 'fp16'])."""
        return list(self.logits)

    def _cols(self, precision: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = self.predictions
        return p["label"].to_numpy(), p[f"pred_{precision}"].to_numpy(), p["device"].to_numpy()

    def metrics(self, precision: str = "fp32") -> dict:
        """overall / macro / per_device / per_group / per_class for one precision."""
        return accuracy_metrics(*self._cols(precision))

    def device_table(self, precision: str = "fp32") -> pd.DataFrame:
        """Accuracy per device, group and overall (%)."""
        return device_table(*self._cols(precision))

    def class_table(self, precision: str = "fp32") -> pd.DataFrame:
        """Class-wise accuracy per device (%)."""
        return class_device_table(*self._cols(precision))

    def confusion(self, precision: str = "fp32") -> dict[str, pd.DataFrame]:
        """Confusion-matrix counts per device."""
        return confusion_matrices(*self._cols(precision))


def evaluate(model: nn.Module | dict[str, Predictor], arrays: Any, frontend_config: FrontendConfig | None = None,
             device: str | torch.device = "cpu", batch_size: int = 256, precisions: tuple[str, ...] = PRECISIONS,
             progress: bool = True, fast: bool = True, with_general: bool = False) -> Evaluation:
    """Predict every clip of `arrays` with a model (in fp32 and/or as model.half(), one front-end pass) or named predictors.

    A MultiDeviceModel routes each clip to its device's network; `with_general=True` also evaluates its general model
    alone on the same clips (keys 'general_fp32', 'general_fp16'). `frontend_config` defaults to the MultiDeviceModel's
    own settings, else the shared FrontendConfig().
    """
    if not isinstance(model, nn.Module):
        logits = {name: predict_logits(fn, arrays, batch_size, progress, desc=f"predict {name}") for name, fn in model.items()}
        return _evaluation(arrays, logits)
    device = torch.device(device)
    if frontend_config is None and isinstance(model, MultiDeviceModel):
        frontend_config = model.frontend_config
    frontend = _frontend(frontend_config, device, fast)
    members = {"": model}
    if with_general:
        if not isinstance(model, MultiDeviceModel):
            raise TypeError(f"with_general=True needs a MultiDeviceModel; got {type(model).__name__}.")
        members["general_"] = model.general
    nets = {f"{prefix}{p}": (*_prepare(net, device, p == "fp16", fast), p == "fp16")
            for prefix, net in members.items() for p in precisions}
    outputs: dict[str, list] = {name: [] for name in nets}
    with torch.inference_mode():
        for waves, devices in _batches(arrays, batch_size, progress, f"evaluate {'+'.join(precisions)}"):
            mel = frontend(waves.to(device))
            for name, (net, takes_devices, half) in nets.items():
                outputs[name].append(_logits(net, takes_devices, mel, devices, half).numpy())
    return _evaluation(arrays, {name: np.concatenate(v) for name, v in outputs.items()})


def _evaluation(arrays: Any, logits: dict[str, np.ndarray]) -> Evaluation:
    """The Evaluation of named logits on the clips of `arrays`."""
    frame = pd.DataFrame({"filename": list(arrays.filenames), "device": list(arrays.devices),
                          "label": np.asarray(arrays.labels, dtype=np.int64)})
    for name, values in logits.items():
        frame[f"pred_{name}"] = values.argmax(1)
    return Evaluation(frame, logits)


def write_run_evaluation(run_dir: str | Path, evaluation: Evaluation, info: dict) -> Path:
    """Write metrics.json, predictions.csv and the figures into a run folder; returns the metrics.json path."""
    run_dir = Path(run_dir)
    metrics = {p: evaluation.metrics(p) for p in evaluation.precisions} | {"info": info}
    path = runs.write_json(run_dir / runs.METRICS, metrics)
    frame = evaluation.predictions.copy()
    frame["label"] = [CLASSES[i] for i in frame["label"]]
    for p in evaluation.precisions:
        frame[f"pred_{p}"] = [CLASSES[i] for i in frame[f"pred_{p}"]]
    runs.atomic_write(run_dir / runs.PREDICTIONS, lambda p: frame.to_csv(p, index=False))
    main = "fp16" if "fp16" in evaluation.precisions else evaluation.precisions[0]
    per_device = {p: evaluation.metrics(p)["per_device"] for p in evaluation.precisions if not p.startswith("general_")}
    history = runs.read_history(run_dir)
    with plots.theme():
        figures = {"confusion_matrices.png": plots.plot_confusion_grid(evaluation.confusion(main), title=f"{main} predictions"),
                   "device_accuracy.png": plots.plot_device_accuracy(per_device)}
        if history:
            figures["training_curves.png"] = plots.plot_history(history)
        for name, fig in figures.items():
            runs.atomic_write(run_dir / name, lambda p: fig.savefig(p, dpi=120, bbox_inches="tight", format="png"))
            plt.close(fig)
    return path


def comparison_table(evaluation: Evaluation, precision: str = "fp16") -> pd.DataFrame:
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


def comparison_metrics(evaluation: Evaluation) -> dict:
    """The metrics.json block "device_vs_general": {precision: {overall, macro, per_device, per_group: {general, device_specific}}}."""
    out = {}
    for precision in [p for p in evaluation.precisions if not p.startswith("general_")]:
        general, specific = evaluation.metrics(f"general_{precision}"), evaluation.metrics(precision)
        block = {key: {"general": general[key], "device_specific": specific[key]} for key in ("overall", "macro")}
        for key in ("per_device", "per_group"):
            block[key] = {name: {"general": general[key][name], "device_specific": specific[key][name]} for name in specific[key]}
        out[precision] = block
    return out


def write_comparison(metrics_path: str | Path, evaluation: Evaluation) -> pd.DataFrame:
    """Add "device_vs_general" to an existing metrics.json; return the fp16 comparison table (fp32 if fp16 was not run)."""
    path = Path(metrics_path)
    metrics = runs.read_metrics(path.parent)
    metrics["device_vs_general"] = comparison_metrics(evaluation)
    runs.write_json(path, metrics)
    return comparison_table(evaluation, "fp16" if "fp16" in evaluation.precisions else evaluation.precisions[0])


@dataclass
class RunEvaluation:
    """What `evaluate_run` returns: the evaluation, the metrics.json path and, for a multi-device run, the comparison."""

    evaluation: Evaluation
    metrics_path: Path
    comparison: pd.DataFrame | None


def evaluate_run(run_dir: str | Path, data_dir: str | Path | None = None, split: str = "test", device: str = "auto",
                 batch_size: int = 256, fast: bool = True, progress: bool = True) -> RunEvaluation:
    """Evaluate a run folder of either kind on a split (fp32 and fp16); write metrics.json, predictions.csv and figures.

    A stage-2 run also evaluates its general model alone and adds "device_vs_general" to metrics.json.
    """
    model, frontend_config, run = runs.load_run_model(run_dir)
    data_dir = Path(data_dir or run.get("data_dir") or default_data_dir())
    if not (data_dir / "meta.csv").exists():
        raise TrainError(f"no TAU22 data set at {data_dir} (no meta.csv); pass the data folder the run was trained on: "
                         f"`asc eval --run {shell_quote(run_dir)} --data-dir DATA_FOLDER`.")
    arrays = load_split_arrays(data_dir, split, progress=progress)
    compute = resolve_device(device)
    multi = runs.run_kind(run) == "devices"
    evaluation = evaluate(model, arrays, frontend_config, device=compute, batch_size=batch_size, progress=progress,
                          fast=fast, with_general=multi)
    info = {"split": split, "data_dir": str(data_dir.resolve()), "clips": len(evaluation.predictions),
            "device": str(compute), "speed_layer": fast}
    path = write_run_evaluation(run_dir, evaluation, info)
    comparison = write_comparison(path, evaluation) if multi else None
    return RunEvaluation(evaluation, path, comparison)
