"""`asc submit`: the files of a DCASE2025 Task 1 submission, made with the inference-package API (asc_utils.inference).

- complexity.json: MACs and parameter bytes (fp16) of the network each device id a, b, c, s1..s10 uses;
- output.csv: predictions for an evaluation folder (`evaluation_setup/fold1_test.csv` with tab-separated `filename`,
  `device_id`, plus the audio files it names): tab-separated `filename`, `scene_label`, then one softmax probability
  column per class in class order;
- test_accuracy.json: accuracy of the same fp16 model on the development test split (overall, macro, per device/group/class).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import torch

from asc_utils.complexity import complexity_json
from asc_utils.data import load_split
from asc_utils.errors import UserError
from asc_utils.evaluate import accuracy_metrics
from asc_utils.inference import load_model, predict_files
from asc_utils.labels import CLASSES
from asc_utils.models import MODEL_INPUT_SIZES
from asc_utils.multidevice import MultiDeviceModel

EVAL_SETUP = Path("evaluation_setup") / "fold1_test.csv"


class EvalSetupError(UserError, ValueError):
    """The evaluation folder's fold1_test.csv lacks a column."""


class EvalSetupMissingError(EvalSetupError, FileNotFoundError):
    """The evaluation folder has no evaluation_setup/fold1_test.csv."""


def read_eval_setup(eval_dir: str | os.PathLike) -> pd.DataFrame:
    """The `filename`, `device_id` table of an evaluation folder, with clear errors for a missing or malformed file."""
    path = Path(eval_dir) / EVAL_SETUP
    if not path.is_file():
        raise EvalSetupMissingError(f"No {EVAL_SETUP} in '{eval_dir}'. Expected an evaluation folder with that tab-separated "
                                "file (columns filename, device_id) and the audio files it lists.")
    table = pd.read_csv(path, sep="\t", dtype=str)
    missing = [c for c in ("filename", "device_id") if c not in table.columns]
    if missing:
        raise EvalSetupError(f"{path} lacks the column(s) {missing}; found {list(table.columns)}. "
                         "Expected a tab-separated header 'filename<TAB>device_id'.")
    return table[["filename", "device_id"]]


def output_table(filenames: list[str], logits: torch.Tensor) -> pd.DataFrame:
    """The output.csv table: filename, scene_label (the most probable class), then softmax probabilities in class order."""
    probs = torch.softmax(logits.float(), dim=1).numpy()
    table = pd.DataFrame(probs, columns=list(CLASSES))
    table.insert(0, "scene_label", [CLASSES[i] for i in probs.argmax(1)])
    table.insert(0, "filename", filenames)
    return table


def write_complexity(model: MultiDeviceModel, path: str | os.PathLike) -> dict:
    """Write complexity.json for devices a, b, c, s1..s10 (each device's own network; unseen ids use the general model)."""
    return complexity_json(model.get_model_for_device, MODEL_INPUT_SIZES[model.model_name], torch.float16, path=path)


def dev_test_accuracy(model: MultiDeviceModel, data_dir: str | os.PathLike, use_cuda: bool = True, batch_size: int = 256,
                      progress: bool = True, fast: bool = True) -> dict:
    """Metrics of the loaded (fp16) model on the development test split, read from the audio files like the eval set."""
    data_dir = Path(data_dir)
    split = load_split(data_dir, "test")
    logits = predict_files(model, [data_dir / f for f in split["filename"]], list(split["device"]), use_cuda, batch_size, progress,
                           fast=fast)
    metrics = accuracy_metrics(split["label"].to_numpy(), logits.argmax(1).numpy(), split["device"].to_numpy())
    return {"split": "test", "data_dir": str(data_dir.resolve()), "clips": len(split), "precision": "fp16", **metrics}


def make_submission(run: str | os.PathLike | None, eval_dir: str | os.PathLike, out_dir: str | os.PathLike,
                    data_dir: str | os.PathLike | None = None, use_cuda: bool = True, batch_size: int = 256,
                    progress: bool = True, fast: bool = True) -> dict[str, Path]:
    """Write complexity.json, output.csv and (when data_dir is given) test_accuracy.json into out_dir; return their paths."""
    model = load_model(run)
    setup = read_eval_setup(eval_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"complexity": out_dir / "complexity.json", "output": out_dir / "output.csv"}
    write_complexity(model, paths["complexity"])
    logits = predict_files(model, [Path(eval_dir) / f for f in setup["filename"]], list(setup["device_id"]), use_cuda,
                           batch_size, progress, fast=fast)
    output_table(list(setup["filename"]), logits).to_csv(paths["output"], sep="\t", index=False, float_format="%.6f")
    if data_dir is not None:
        paths["test_accuracy"] = out_dir / "test_accuracy.json"
        result = dev_test_accuracy(model, data_dir, use_cuda, batch_size, progress, fast=fast)
        paths["test_accuracy"].write_text(json.dumps(result, indent=2))
    return paths
