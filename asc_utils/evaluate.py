"""Evaluation as in DCASE: macro-average and overall accuracy, per class / device / device group, confusion matrices, fp16 and fp32.

Accuracies are fractions in [0, 1] (None where a device or class has no clips). `per_device` and `per_group` are the plain
accuracy over that device's (group's) clips; `macro` is the mean of the class-wise accuracies (the DCASE primary metric).
`asc eval` writes metrics.json as ``{"fp32": M, "fp16": M, "info": {...}}`` where each M has exactly the keys
``overall``, ``macro``, ``per_device`` (a..s6), ``per_group`` (real/seen/unseen) and ``per_class``.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from asc_utils.fast_inference import fast_inference_model
from asc_utils.features import FrontendConfig, LogMelFrontend
from asc_utils.labels import CLASSES, DEVICE_GROUPS, DEVICES

# predict_logits(waves [B, N] float32 on the CPU, device ids) -> logits [B, 10]
Predictor = Callable[[torch.Tensor, list[str]], torch.Tensor]
PRECISIONS = ("fp32", "fp16")


def _prepare(model: nn.Module, device: torch.device, half: bool) -> tuple[nn.Module, bool]:
    """An eval-mode copy of the model on `device` (model.half() when half) and whether its forward takes device ids.

    fp32 on the CPU uses `fast_inference_model` (BatchNorm folded; the same logits up to float rounding, several times faster).
    """
    net = copy.deepcopy(model).to(device, memory_format=torch.contiguous_format).eval()
    if half:
        net = net.half()
    elif device.type == "cpu":
        net = fast_inference_model(net)
    return net, "devices" in inspect.signature(net.forward).parameters


def _logits(net: nn.Module, takes_devices: bool, mel: torch.Tensor, devices: list[str], half: bool) -> torch.Tensor:
    """Run a prepared net on fp32 log-mels (cast to half first for an fp16 net, as in the challenge)."""
    mel = mel.half() if half else mel
    logits = net(mel, devices) if takes_devices else net(mel)
    return logits.float().cpu()


def make_predictor(model: nn.Module, frontend_config: FrontendConfig | None = None, device: str | torch.device = "cpu",
                   half: bool = False) -> Predictor:
    """Wrap a model on log-mels (forward(x) or forward(x, devices)) into a predictor; half=True evaluates a model.half() copy.

    As in the challenge, the front end stays in fp32 and only the log-mel is cast to half before the network.
    """
    device = torch.device(device)
    frontend = LogMelFrontend(frontend_config or FrontendConfig()).to(device).eval()
    net, takes_devices = _prepare(model, device, half)

    @torch.inference_mode()
    def predict(waves: torch.Tensor, devices: list[str]) -> torch.Tensor:
        return _logits(net, takes_devices, frontend(waves.to(device).float()), devices, half)

    return predict


def _batches(arrays: Any, batch_size: int, progress: bool, desc: str) -> Iterator[tuple[torch.Tensor, list[str]]]:
    n = len(arrays.labels)
    if n == 0:
        raise ValueError("the evaluation split holds no clips: check the split file of the data folder.")
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
             progress: bool = True) -> Evaluation:
    """Predict every clip of `arrays` with a model (in fp32 and/or as model.half(), one front-end pass) or named predictors."""
    if isinstance(model, nn.Module):
        device = torch.device(device)
        frontend = LogMelFrontend(frontend_config or FrontendConfig()).to(device).eval()
        nets = {p: _prepare(model, device, half=p == "fp16") for p in precisions}
        outputs: dict[str, list] = {p: [] for p in precisions}
        with torch.inference_mode():
            for waves, devices in _batches(arrays, batch_size, progress, f"evaluate {'+'.join(precisions)}"):
                mel = frontend(waves.to(device))
                for p, (net, takes_devices) in nets.items():
                    outputs[p].append(_logits(net, takes_devices, mel, devices, half=p == "fp16").numpy())
        logits = {p: np.concatenate(v) for p, v in outputs.items()}
    else:
        logits = {name: predict_logits(fn, arrays, batch_size, progress, desc=f"predict {name}") for name, fn in model.items()}
    frame = pd.DataFrame({"filename": list(arrays.filenames), "device": list(arrays.devices),
                          "label": np.asarray(arrays.labels, dtype=np.int64)})
    for name, values in logits.items():
        frame[f"pred_{name}"] = values.argmax(1)
    return Evaluation(frame, logits)


def write_run_evaluation(run_dir: str | Path, evaluation: Evaluation, info: dict) -> Path:
    """Write metrics.json, predictions.csv and the figures into a run folder; returns the metrics.json path."""
    import matplotlib.pyplot as plt

    from asc_utils import plots

    run_dir = Path(run_dir)
    metrics = {p: evaluation.metrics(p) for p in evaluation.precisions} | {"info": info}
    path = run_dir / "metrics.json"
    path.write_text(json.dumps(metrics, indent=2))
    frame = evaluation.predictions.copy()
    frame["label"] = [CLASSES[i] for i in frame["label"]]
    for p in evaluation.precisions:
        frame[f"pred_{p}"] = [CLASSES[i] for i in frame[f"pred_{p}"]]
    frame.to_csv(run_dir / "predictions.csv", index=False)
    main = "fp16" if "fp16" in evaluation.precisions else evaluation.precisions[0]
    figures = {"confusion_matrices.png": plots.plot_confusion_grid(evaluation.confusion(main), title=f"{main} predictions"),
               "device_accuracy.png": plots.plot_device_accuracy({p: evaluation.metrics(p)["per_device"] for p in evaluation.precisions})}
    if (run_dir / "history.json").exists():
        figures["training_curves.png"] = plots.plot_history(json.loads((run_dir / "history.json").read_text()))
    for name, fig in figures.items():
        fig.savefig(run_dir / name, dpi=120, bbox_inches="tight")
        plt.close(fig)
    return path


def load_run_model(run_dir: str | Path) -> tuple[nn.Module, FrontendConfig, dict]:
    """The model of a run folder (dispatching on config.json's "kind"), its front-end settings and the run's config."""
    from asc_utils.train import TrainError, load_base_model, load_run_config

    run = load_run_config(run_dir)
    kind = run.get("kind", "base")
    if kind == "devices":  # stage 2: the general model + one fine-tuned model per device, in one file
        from asc_utils.finetune import load_devices_run

        return load_devices_run(run_dir)
    if kind != "base":
        raise TrainError(f"{run_dir} holds a run of kind {kind!r}, which `asc eval` does not know.")
    model, _ = load_base_model(run_dir)
    return model, FrontendConfig(**run["frontend"]), run


def cli_eval(args: argparse.Namespace) -> int:
    """`asc eval`: evaluate a run on the test split (fp32 and fp16); write metrics.json, predictions.csv and figures."""
    from asc_utils.audio import AudioReadError
    from asc_utils.data import DataError, load_split_arrays
    from asc_utils.paths import default_data_dir
    from asc_utils.train import TrainError, resolve_device

    try:
        model, frontend_config, run = load_run_model(args.run)
        data_dir = Path(args.data_dir or run.get("data_dir") or default_data_dir())
        if not (data_dir / "meta.csv").exists():
            raise TrainError(f"no TAU22 data set at {data_dir} (no meta.csv); pass --data-dir with the folder the run was trained on.")
        arrays = load_split_arrays(data_dir, args.split)
        device = resolve_device(args.device)
        if run.get("kind") == "devices":  # also evaluates the general model alone (keys general_fp32, general_fp16)
            from asc_utils.finetune import evaluate_devices

            evaluation = evaluate_devices(model, arrays, device=device, batch_size=args.batch_size)
        else:
            evaluation = evaluate(model, arrays, frontend_config, device=device, batch_size=args.batch_size)
    except (TrainError, DataError, AudioReadError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    info = {"split": args.split, "data_dir": str(data_dir.resolve()), "clips": len(evaluation.predictions), "device": str(device)}
    path = write_run_evaluation(args.run, evaluation, info)
    if run.get("kind") == "devices":  # side by side per device and group, also written to metrics.json "device_vs_general"
        from asc_utils.finetune import write_comparison

        print("general vs device-specific models (fp16):\n" + write_comparison(path, evaluation).to_string() + "\n")
    print(evaluation.device_table("fp16").to_string())
    for p in evaluation.precisions:
        m = evaluation.metrics(p)
        print(f"{p}: macro accuracy {100 * m['macro']:.2f} %, overall {100 * m['overall']:.2f} %")
    print(f"wrote {path} and the figures into {args.run}")
    return 0
