"""The published SNTL-NTU weights: download (cached, sha256-checked), map their names onto ours, load them in fp32."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from asc_utils.download import DownloadError, download
from asc_utils.errors import UserError
from asc_utils.models import build_model
from asc_utils.paths import cache_dir


class WeightsMismatchError(UserError, ValueError):
    """A state dict does not fit the network: unknown, missing or mis-shaped keys."""


@dataclass(frozen=True)
class PublishedWeights:
    """Where a published weight file lives and its sha256."""

    url: str
    sha256: str


_REPO = "https://github.com/joesephgit/DCASE2025/raw/main/predictions"
PUBLISHED: dict[str, PublishedWeights] = {
    "task1_1": PublishedWeights(
        f"{_REPO}/Tan_SNTLNTU_task1_1/model_state_dict.pt", "ce8b35ba34c151e538e76ad97a22c50f13eb5ece0cda3f4d054ab5fed4731afc"
    ),
    "task1_2": PublishedWeights(
        f"{_REPO}/Tan_SNTLNTU_task1_2/model_state_dict.pt", "3f1603f643324420991c0d3f1ff7e0e4080783915dd9c73c651e3579bd88a255"
    ),
}

# Published top-level name -> our module path (see the "Prefix -> step" list of the system description).
PUBLISHED_TO_OURS: dict[str, str] = {
    "param1": "mix_avg",
    "param2": "mix_max",
    "param3": "mix_head",
    "param4": "mix_pools",
    "conv2d_1_0": "stem",  # step 1
    "conv2d_1_1": "expand",  # step 2
    "codw2d_1L1": "freq_conv",  # step 3
    "codw2d_1R1": "time_conv",  # step 4
    "se_1_1": "stem_se",  # step 5
    "conv2d_2_1": "max_branch.pointwise",  # step 7, branch after MaxPool
    "codw2d_2_1L": "max_branch.freq_conv",
    "codw2d_2_1R": "max_branch.time_conv",
    "se_2_1": "max_branch.se",
    "conv2d_2_2": "avg_branch.pointwise",  # step 7, branch after AvgPool
    "codw2d_2_2L": "avg_branch.freq_conv",
    "codw2d_2_2R": "avg_branch.time_conv",
    "se_2_2": "avg_branch.se",
    "conv2d_3_1": "residual_pointwise",  # step 10
    "codw2d_3_1": "down_conv",  # step 11
    "conv2d_4_1": "to_28_conv",  # step 12
    "bgru2d_4_1": "gru",  # step 14
    "conv1d_5_2": "classifier",  # step 16
    "bthnorm2d_3": "unused_norm",  # step 17 (task1_2 only)
    "line2d_5_1": "unused_linear",  # step 17 (task1_2 only)
}
# Inside a conv+BN pair the published weights use Sequential indices; inside squeeze-excitation fc1/fc2.
_SUBMODULES = {"0": "conv", "1": "bn", "fc1": "squeeze", "fc2": "excite"}


def canonical_variant(variant: str) -> str:
    """Normalise 'sntl_task1_1' / 'task1_1' (and the same for 1_2) to 'task1_1' or 'task1_2'."""
    name = variant.lower().removeprefix("sntl_")
    if name not in PUBLISHED:
        raise ValueError(f"Unknown published variant '{variant}'. Expected one of: task1_1, task1_2 (or sntl_task1_1, sntl_task1_2).")
    return name


def map_published_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a published (or original training checkpoint's) state dict to our module names; floats become fp32.

    Accepts the flat published dict, or a training checkpoint {"state_dict": {"model.<key>": ...}} (other entries of the
    checkpoint's state dict, such as front-end buffers, are ignored). Keys that are not
    published names are kept unchanged, so already-converted dicts pass through and unknown keys are reported on loading.
    """
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], Mapping):
        state_dict = state_dict["state_dict"]
        if any(key.startswith("model.") for key in state_dict):  # drop the training wrapper's own entries (e.g. front end)
            state_dict = {key: value for key, value in state_dict.items() if key.startswith("model.")}
    mapped = {}
    for key, value in state_dict.items():
        key = key.removeprefix("model.")
        head, _, rest = key.partition(".")
        if head in PUBLISHED_TO_OURS:
            sub, dot, tail = rest.partition(".")
            rest = _SUBMODULES.get(sub, sub) + dot + tail if dot else rest
            key = PUBLISHED_TO_OURS[head] + ("." + rest if rest else "")
        mapped[key] = value.float() if torch.is_floating_point(value) else value
    return mapped


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Raise WeightsMismatchError listing every unknown, missing and mis-shaped key (after mapping)."""
    expected = model.state_dict()
    unknown = sorted(set(state_dict) - set(expected))
    missing = sorted(set(expected) - set(state_dict))
    shapes = sorted(
        f"{k}: file {tuple(state_dict[k].shape)}, model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    )
    if not (unknown or missing or shapes):
        return
    lines = [f"The weights do not fit {type(model).__name__}{_variant_text(model)}:"]
    for title, items in (("unknown keys", unknown), ("missing keys", missing), ("mis-shaped keys", shapes)):
        if items:
            lines.append(f"  {title} ({len(items)}): " + ", ".join(items))
    if any(k.startswith("unused_") for k in unknown + missing):
        lines.append("  Hint: the unused_* modules exist only in task1_2; did you load a task1_1 file as task1_2 or vice versa?")
    lines.append("Check that the file and the variant/model name belong together.")
    raise WeightsMismatchError("\n".join(lines))


def _variant_text(model: nn.Module) -> str:
    variant = getattr(model, "variant", None)
    return f" (variant {variant})" if variant else ""


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict file saved with torch.save (tensors only; no code is executed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Weight file not found: '{path}'. Pass the path of a downloaded model_state_dict.pt, or path=None to download it.")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a truncated or foreign file
        raise WeightsMismatchError(
            f"Could not read '{path}' as a PyTorch state dict: {exc}. Expected a file written by torch.save "
            "(e.g. the published model_state_dict.pt); delete it and download it again."
        ) from exc
    if not isinstance(data, Mapping):
        raise WeightsMismatchError(f"'{path}' holds a {type(data).__name__}, expected a state dict (a mapping of names to tensors).")
    return dict(data)


def published_weights_path(variant: str, progress: bool = True) -> Path:
    """The cached published weight file of a variant, downloaded (with a sha256 check) on first use."""
    variant = canonical_variant(variant)
    info = PUBLISHED[variant]
    dest = cache_dir() / "weights" / f"sntl_{variant}_model_state_dict.pt"
    try:
        return download(info.url, dest, sha256=info.sha256, progress=progress)
    except DownloadError as exc:
        raise DownloadError(
            f"{exc}\nThe published {variant} weights come from {info.url}; "
            f"you can also call load_published('{variant}', path='/path/to/model_state_dict.pt')."
        ) from exc


def load_published(variant: str = "task1_2", path: str | os.PathLike | None = None, progress: bool = True) -> nn.Module:
    """The SNTL network of a variant with the published weights in fp32, in eval() mode (path=None: download/cache)."""
    variant = canonical_variant(variant)
    if path is None:
        path = published_weights_path(variant, progress=progress)
    model = build_model(f"sntl_{variant}")
    state = map_published_keys(read_state_dict(path))
    check_state_dict(model, state)
    model.load_state_dict(state)
    return model.eval()
