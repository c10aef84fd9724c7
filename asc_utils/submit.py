"""`asc submit`: the files of a DCASE2025 Task 1 submission, made with the inference-package API (asc_utils.inference).

The files are those the challenge's own evaluation script writes, plus `complexity.json`:
- complexity.json: MACs and parameter bytes (fp16) of the network each device id a, b, c, s1..s10 uses;
- output.csv: predictions for an evaluation folder (`evaluation_setup/fold1_test.csv` with tab-separated `filename`,
  `device_id`, plus the audio files it names): tab-separated `filename`, `scene_label`, then one softmax probability
  column per class in class order;
- model_state_dict.pt: the weights as submitted (fp16, on the CPU). For a single model (a `asc train base` run or the
  published weights) it is the network's state dict, as in the challenge's template. A multi-device model has no single
  state dict, so the file then holds the content of a multi-device file (`MultiDeviceModel.save`: the general network, one
  network per device, the model name and the front-end settings). `asc_utils.inference.load_model` reads either kind;
- test_accuracy.json: accuracy of the same fp16 model on the development test split: the template's `"Test Accuracy"`
  (overall accuracy in %, two decimals) beside the richer metrics (overall, macro, per device/group/class, as fractions).

No file holds a local absolute path: test_accuracy.json names the data folder by its name only. The files are written into a
temporary folder next to the output folder and moved into place only when all of them succeeded; other files in the
output folder are never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import soundfile as sf
import torch
from tqdm.auto import tqdm

from asc_utils.audio import AudioReadError
from asc_utils.complexity import complexity_json
from asc_utils.data import is_embedded, load_split
from asc_utils.errors import UserError
from asc_utils.evaluate import accuracy_metrics
from asc_utils.inference import load_model, predict_files
from asc_utils.labels import CLASSES
from asc_utils.models import MODEL_INPUT_SIZES
from asc_utils.multidevice import MultiDeviceModel

EVAL_SETUP = Path("evaluation_setup") / "fold1_test.csv"
FILES = {  # key in make_submission's result -> file name
    "complexity": "complexity.json",
    "output": "output.csv",
    "model_state_dict": "model_state_dict.pt",
    "test_accuracy": "test_accuracy.json",
}


class EvalSetupError(UserError, ValueError):
    """The evaluation folder's fold1_test.csv lacks a column."""


class EvalSetupMissingError(EvalSetupError, FileNotFoundError):
    """The evaluation folder has no evaluation_setup/fold1_test.csv."""


class EvalAudioError(UserError, RuntimeError):
    """Audio files of the evaluation folder that cannot be read."""


class SubmissionOutputError(UserError, ValueError):
    """An output folder the submission cannot be written to."""


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


def write_model_state_dict(model: MultiDeviceModel, path: str | os.PathLike) -> Path:
    """Write model_state_dict.pt: the network's state dict for a single model, the multi-device file content otherwise.

    The weights are written as they are (fp16 after `inference.load_model`), on the CPU; `inference.load_model` reads both.
    """
    path = Path(path)
    if model.devices:
        return model.save(path)  # general network + one network per device, model name, front end; no paths
    torch.save({name: value.detach().cpu() for name, value in model.general.state_dict().items()}, path)
    return path


def dev_test_accuracy(model: MultiDeviceModel, data_dir: str | os.PathLike, use_cuda: bool = True, batch_size: int = 256,
                      progress: bool = True, fast: bool = True) -> dict:
    """Metrics of the loaded (fp16) model on the development test split, read from the audio files like the eval set.

    "Test Accuracy" is what the challenge's evaluation script writes (overall accuracy in %, two decimals); "data_dir" is
    the data folder's name only (the file is meant to be shared, so it holds no local path).
    """
    data_dir = Path(data_dir)
    split = load_split(data_dir, "test")
    logits = predict_files(model, [data_dir / f for f in split["filename"]], list(split["device"]), use_cuda, batch_size, progress,
                           fast=fast)
    metrics = accuracy_metrics(split["label"].to_numpy(), logits.argmax(1).numpy(), split["device"].to_numpy())
    return {"Test Accuracy": round(100 * metrics["overall"], 2), "split": "test", "data_dir": data_dir.resolve().name,
            "embedded_data_set": is_embedded(data_dir), "clips": len(split), "precision": "fp16", **metrics}


def unreadable_audio(paths: Sequence[Path], progress: bool = True) -> list[Path]:
    """The files among `paths` whose wav header cannot be read (missing, empty, truncated header, not audio)."""
    bad = []
    for path in tqdm(paths, desc="checking audio files", unit="file", disable=not progress, leave=False):
        try:
            sf.info(str(path))
        except Exception:  # soundfile raises several types (LibsndfileError, RuntimeError, OSError)
            bad.append(path)
    return bad


def _predict_eval(model: MultiDeviceModel, eval_dir: Path, setup: pd.DataFrame, use_cuda: bool, batch_size: int, progress: bool,
                  fast: bool) -> torch.Tensor:
    """Logits of every file of the evaluation folder; an unreadable file stops it with a message naming all such files."""
    paths = [eval_dir / f for f in setup["filename"]]
    try:
        return predict_files(model, paths, list(setup["device_id"]), use_cuda, batch_size, progress, fast=fast)
    except AudioReadError as exc:
        bad = unreadable_audio(paths, progress)
        names = [str(p.relative_to(eval_dir)) for p in bad]
        found = (f"{len(bad)} of the {len(paths)} audio files cannot be read: {', '.join(names[:10])}"
                 f"{f' and {len(names) - 10} more' if len(names) > 10 else ''}" if bad else f"An audio file cannot be read ({exc})")
        raise EvalAudioError(
            f"{found} (evaluation folder '{eval_dir}'). A submission needs a prediction for every file listed in {EVAL_SETUP}, "
            "so nothing was written. Replace the damaged files with intact copies (download or extract the evaluation set "
            "again) and run the command again.") from exc


def _new_folders(path: Path) -> list[Path]:
    """The folders that `path.mkdir(parents=True)` would create, deepest first."""
    new = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        new.append(folder)
    return new


def make_submission(run: str | os.PathLike | None, eval_dir: str | os.PathLike, out_dir: str | os.PathLike,
                    data_dir: str | os.PathLike | None = None, use_cuda: bool = True, batch_size: int = 256,
                    progress: bool = True, fast: bool = True) -> dict[str, Path]:
    """Write complexity.json, output.csv, model_state_dict.pt and (when data_dir is given) test_accuracy.json into out_dir.

    Everything is computed into a temporary folder next to out_dir first; the files are moved into out_dir only when all of
    them succeeded, so a failure leaves out_dir as it was. Returns the paths of the written files.
    """
    model = load_model(run)
    eval_dir, out_dir = Path(eval_dir), Path(out_dir)
    setup = read_eval_setup(eval_dir)
    if data_dir is not None:
        load_split(data_dir, "test")  # a missing or broken data folder fails here, before the long evaluation
    if out_dir.exists() and not out_dir.is_dir():
        raise SubmissionOutputError(f"The output folder '{out_dir}' is a file. Pass a folder (new or existing) as --out.")
    created = _new_folders(out_dir.parent)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    names = {key: name for key, name in FILES.items() if key != "test_accuracy" or data_dir is not None}
    moved = False
    try:
        write_complexity(model, staging / names["complexity"])
        write_model_state_dict(model, staging / names["model_state_dict"])  # before predicting: CUDA may move the model
        logits = _predict_eval(model, eval_dir, setup, use_cuda, batch_size, progress, fast)
        output_table(list(setup["filename"]), logits).to_csv(staging / names["output"], sep="\t", index=False, float_format="%.6f")
        if data_dir is not None:
            result = dev_test_accuracy(model, data_dir, use_cuda, batch_size, progress, fast=fast)
            (staging / names["test_accuracy"]).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        out_dir.mkdir(exist_ok=True)
        for name in names.values():
            os.replace(staging / name, out_dir / name)
        moved = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # the temporary folder this call created (empty after a success)
        if not moved:
            for folder in created:  # parent folders this call created, if they are still empty
                try:
                    folder.rmdir()
                except OSError:
                    break
    return {key: out_dir / name for key, name in names.items()}
