"""The DCASE2025 Task 1 inference-package API: load_model, load_inputs, get_model_for_device, predict.

Submissions to DCASE2025 Task 1 were installable packages with these four functions; this module offers the same API for
every kind of model file of this project. As in the challenge, the networks are stored in half precision (`model.half()`)
and the log-mel front end computes in fp32. On a GPU the networks also compute in fp16. On the CPU, PyTorch's fp16
convolutions work but are slower than fp32 ones (benchmarks/RESULTS.md), so there the fp16 weights are computed
in fp32 arithmetic: the same rounded weights, logits within about 0.01 of fp16 arithmetic.

`model_file_path` may be:
- None: the published SNTL-NTU task1_2 weights (downloaded once, sha256-checked, cached);
- a published SNTL state dict (`.pt`, task1_1 or task1_2): every device then shares that one model;
- a run folder of `asc train base` (its model.pt) or of `asc train devices` (its multidevice.pt);
- a file of such a run: model.pt, checkpoint.pt (the last finished epoch of an unfinished run) or multidevice.pt.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from asc_utils import runs, speed
from asc_utils.audio import fix_length, read_wav, resample, to_mono
from asc_utils.errors import UserError
from asc_utils.features import FrontendConfig, LogMelFrontend
from asc_utils.labels import CLASSES
from asc_utils.models import MODEL_NAMES, build_model
from asc_utils.multidevice import FILE_FORMAT, MultiDeviceModel, from_content, is_multidevice_content
from asc_utils.pretrained import check_state_dict, load_published, map_published_keys
from asc_utils.recipe import TrainConfig


class ModelFileError(UserError, ValueError):
    """A model path that is neither a run folder nor a weight file this project can read."""


class ModelFileNotFoundError(ModelFileError, FileNotFoundError):
    """A model path that does not exist."""


class InputListError(UserError, ValueError):
    """File paths and device ids that do not fit together (different lengths, missing files)."""


class AudioFilesMissingError(InputListError, FileNotFoundError):
    """Audio files named in the input list that do not exist."""


def load_model(model_file_path: str | os.PathLike | None = None) -> MultiDeviceModel:
    """Load any supported model file or run folder as a MultiDeviceModel in eval mode with fp16 weights (`.half()`)."""
    if model_file_path is None:
        model = MultiDeviceModel(load_published("task1_2"), model_name="sntl_task1_2", frontend_config=FrontendConfig())
    else:
        model = _load_path(Path(model_file_path))
    return model.half().eval()


def _load_path(path: Path) -> MultiDeviceModel:
    if path.is_dir():
        for name in (runs.MULTIDEVICE, runs.MODEL):
            if (path / name).is_file():
                return _load_path(path / name)
        if _run_info(path).get("kind") == "devices":
            raise ModelFileError(f"The device fine-tuning in '{path}' has not finished (no {runs.MULTIDEVICE}); continue it with "
                                 f"`asc train devices --base <its base run> --out {path} --resume`.")
        if (path / runs.CHECKPOINT).is_file():
            raise ModelFileError(f"The run in '{path}' has not finished (checkpoint.pt but no model.pt). Finish it with --resume, "
                                 f"or pass '{path / 'checkpoint.pt'}' explicitly to use its last finished epoch.")
        raise ModelFileError(f"'{path}' is a folder without {runs.MULTIDEVICE} or model.pt. Expected a run folder of "
                             "`asc train base` / `asc train devices`, or the path of a weight file.")
    if not path.is_file():
        raise ModelFileNotFoundError(f"Model file not found: '{path}'. Pass a run folder, a .pt weight file, or None for the "
                                "published task1_2 weights.")
    content = _read_torch_file(path)
    if is_multidevice_content(content):
        return from_content(content, source=str(path))
    if isinstance(content, Mapping) and {"model", "optimizer", "config"} <= set(content):
        return _from_checkpoint(content, path)
    if isinstance(content, Mapping) and content and all(isinstance(v, torch.Tensor) for v in content.values()):
        return _from_state_dict(content, path)
    raise ModelFileError(f"'{path}' is not a model file this project can read. Expected a {runs.MULTIDEVICE} "
                         f"(format '{FILE_FORMAT}'), a training checkpoint.pt, a model.pt state dict, or a published SNTL state dict.")


def _read_torch_file(path: Path) -> object:
    """torch.load with weights_only=True (no code runs); our checkpoints also hold numpy random states, allowed explicitly."""
    core = getattr(np, "_core", None) or np.core
    allowed = [np.dtype, np.ndarray, core.multiarray._reconstruct, type(np.dtype("uint32"))]
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a truncated or foreign file
        raise ModelFileError(f"Could not read '{path}' as a PyTorch weight file: {exc}. Expected a file written by torch.save "
                             "(a run's model.pt / checkpoint.pt / multidevice.pt, or a published state dict).") from exc


def _run_info(folder: Path) -> dict:
    """The config.json of the run a weight file belongs to (empty when there is none, e.g. a downloaded file)."""
    return runs.read_config(folder) if (folder / runs.CONFIG).is_file() else {}


def _from_checkpoint(content: Mapping, path: Path) -> MultiDeviceModel:
    config = TrainConfig.from_dict(content["config"])
    model = build_model(config.model)
    model.load_state_dict(content["model"])
    frontend = FrontendConfig(**_run_info(path.parent).get("frontend", config.frontend_config().to_dict()))
    return MultiDeviceModel(model.eval(), model_name=config.model, frontend_config=frontend).eval()


def _from_state_dict(state: Mapping[str, torch.Tensor], path: Path) -> MultiDeviceModel:
    """A plain state dict: ours (model.pt, names from config.json) or published (names mapped); the architecture is detected."""
    info = _run_info(path.parent)
    named = info.get("train", {}).get("model")
    mapped = map_published_keys(state)
    errors = []
    for name in [named] if named else MODEL_NAMES:
        model = build_model(name)
        try:
            check_state_dict(model, mapped)
        except ValueError as exc:
            errors.append(f"{name}: {exc}")
            continue
        model.load_state_dict(mapped)
        frontend = FrontendConfig(**info["frontend"]) if "frontend" in info else FrontendConfig()
        return MultiDeviceModel(model.eval(), model_name=name, frontend_config=frontend).eval()
    raise ModelFileError(f"The state dict in '{path}' fits none of the networks tried:\n" + "\n".join(errors))


def get_model_for_device(model: MultiDeviceModel, device_id: str) -> nn.Module:
    """The network that handles clips of `device_id` (case-insensitive; devices without a network use the general model).

    Unseen DCASE2025 devices (s4-s10) use the general model silently; an unknown id such as 'xyz' or '' warns
    (`asc_utils.multidevice.UnknownDeviceWarning`).
    """
    return model.get_model_for_device(device_id)


def _check_lists(file_paths: Sequence[str | os.PathLike], device_ids: Sequence[str]) -> tuple[list[Path], list[str]]:
    if isinstance(file_paths, (str, os.PathLike)) or isinstance(device_ids, str):
        raise TypeError("file_paths and device_ids must be lists (one entry per clip), not a single string.")
    paths, ids = [Path(p) for p in file_paths], list(device_ids)
    if len(paths) != len(ids):
        raise InputListError(f"Got {len(paths)} file paths but {len(ids)} device ids: give exactly one device id per file.")
    bad = [d for d in ids if not isinstance(d, str)]
    if bad:
        raise TypeError(f"Device ids must be strings such as 'a' or 's4'; found {bad[:3]!r}.")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise AudioFilesMissingError(f"{len(missing)} of {len(paths)} audio files do not exist, e.g. {missing[:3]}. "
                                "Check the paths (relative paths are taken from the current folder).")
    return paths, ids


def load_inputs(file_paths: Sequence[str | os.PathLike], device_ids: Sequence[str], model: MultiDeviceModel) -> list[torch.Tensor]:
    """Read each file as a mono fp32 waveform of exactly 1 s at the model's sample rate (resampled, cropped or zero-padded)."""
    paths, _ = _check_lists(file_paths, device_ids)
    rate = model.frontend_config.sample_rate
    waves = []
    for path in paths:
        wave, sr = read_wav(path)
        tensor = resample(torch.from_numpy(to_mono(wave)), sr, rate)
        waves.append(fix_length(tensor, rate))
    return waves


def _target_device(use_cuda: bool) -> torch.device:
    return torch.device("cuda" if use_cuda and torch.cuda.is_available() else "cpu")


def _cpu_network(model: MultiDeviceModel, fast: bool) -> nn.Module:
    """The network that computes on the CPU: the fp16-rounded weights in fp32 arithmetic (see the module docstring)."""
    if fast:
        return speed.for_inference(model)
    return model.eval() if next(model.parameters()).dtype == torch.float32 else copy.deepcopy(model).float().eval()


def _frontend(model: MultiDeviceModel, device: torch.device, fast: bool) -> LogMelFrontend:
    frontend = LogMelFrontend(model.frontend_config)
    return (speed.fast_frontend(frontend) if fast else frontend).eval().to(device)


@torch.no_grad()
def predict_waveforms(model: MultiDeviceModel, waves: torch.Tensor | np.ndarray, device_ids: Sequence[str],
                      use_cuda: bool = True, batch_size: int = 256, progress: bool = False, fast: bool = True,
                      warn_unknown: bool = True) -> torch.Tensor:
    """Logits [N, classes] (fp32, CPU) for waveforms [N, samples]: fp32 front end, then each device's network (fp16 on CUDA).

    `fast=False` computes with the readable front end and network instead of the speed layer (same logits up to rounding).
    Unknown device ids warn once per call (`warn_unknown=False`: the caller checked them already).
    """
    if len(waves) != len(device_ids):
        raise InputListError(f"Got {len(waves)} waveforms but {len(device_ids)} device ids: give one device id per waveform.")
    if warn_unknown:
        model.warn_unknown_devices(device_ids)
    device = _target_device(use_cuda)
    frontend = _frontend(model, device, fast)
    if device.type == "cpu":
        net, dtype = _cpu_network(model, fast), torch.float32
    else:
        net, dtype = model.eval().to(device), next(model.parameters()).dtype
    outputs = []
    for start in tqdm(range(0, len(waves), batch_size), desc="predict", disable=not progress, leave=False):
        batch = torch.as_tensor(np.asarray(waves[start : start + batch_size], dtype=np.float32)).to(device)
        mel = frontend(batch).to(dtype)
        outputs.append(net(mel, list(device_ids[start : start + batch_size]), warn_unknown=False).float().cpu())
    return torch.cat(outputs) if outputs else torch.empty(0, len(CLASSES))


def predict_files(model: MultiDeviceModel, file_paths: Sequence[str | os.PathLike], device_ids: Sequence[str], use_cuda: bool = True,
                  batch_size: int = 256, progress: bool = True, fast: bool = True, prefetch: bool | None = None) -> torch.Tensor:
    """Logits [N, classes] (fp32, CPU) of a loaded model for audio files, read batch by batch (never all at once).

    `prefetch` (default: the same as `fast`) decodes the next batch's files in a background thread while the current batch
    is computed (`asc_utils.speed.prefetch`): the same logits in the same order, at most three batches in memory.
    """
    paths, ids = _check_lists(file_paths, device_ids)
    model.warn_unknown_devices(ids)  # once for the whole list, not once per batch
    if _target_device(use_cuda).type == "cpu":
        model = _cpu_network(model, fast)  # once here, not once per batch in predict_waveforms
    starts = range(0, len(paths), batch_size)

    def decode(start: int) -> torch.Tensor:
        return torch.stack(load_inputs(paths[start : start + batch_size], ids[start : start + batch_size], model))

    decoded = speed.prefetch(decode, starts) if (fast if prefetch is None else prefetch) else map(decode, starts)
    outputs = [torch.empty(0, len(CLASSES))]
    for start, waves in tqdm(zip(starts, decoded), total=len(starts), desc="predict", unit="batch", disable=not progress):
        outputs.append(predict_waveforms(model, waves, ids[start : start + batch_size], use_cuda=use_cuda,
                                         batch_size=batch_size, fast=fast, warn_unknown=False))
    return torch.cat(outputs)


def predict(file_paths: Sequence[str | os.PathLike], device_ids: Sequence[str], model_file_path: str | os.PathLike | None = None,
            use_cuda: bool = True, batch_size: int = 256, progress: bool = True, fast: bool = True) -> tuple[list[torch.Tensor], list[str]]:
    """Logits (one [10] tensor per file, fp16 networks as in the challenge) and the class order (the DCASE2025 API).

    `device_ids` are case-insensitive ('A' is device 'a'). Each clip goes to the network of its device; devices without a
    network of their own use the general model: the unseen DCASE2025 devices (s4-s10, e.g. 's9') silently, as the challenge
    intends, while an id that is no DCASE2025 device and no device of the model (e.g. 'xyz' or '') is most likely a mistake
    in the input list, so the call warns once (`asc_utils.multidevice.UnknownDeviceWarning`), listing those ids.
    `fast=False` runs the readable front end and network instead of the speed layer (the same logits up to rounding).
    """
    _check_lists(file_paths, device_ids)  # fail on bad input before loading (or downloading) a model
    model = load_model(model_file_path)
    logits = predict_files(model, file_paths, device_ids, use_cuda=use_cuda, batch_size=batch_size, progress=progress, fast=fast)
    return list(logits.unbind(0)), list(CLASSES)
