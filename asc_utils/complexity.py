"""Model complexity the DCASE way: parameter memory at a given precision, MACs (torchinfo), layer-by-layer tables, complexity.json."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from asc_utils.labels import DCASE_COMPLEXITY_DEVICES

# DCASE2025 Task 1 limits, per device model.
MAX_PARAM_BYTES = 128_000  # bytes of model.parameters() at their stored precision (BatchNorm running stats do not count)
MAX_MACS = 30_000_000  # multiply-accumulate operations for one 1 s clip
DEFAULT_INPUT_SIZE = (1, 1, 256, 33)  # the SNTL log-mel of 1 s, batch 1
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "int8": torch.int8}
TABLE_COLUMNS = ["name", "type", "output shape", "params", "MACs", "params share", "MACs share"]


@dataclass
class ComplexityReport:
    """Complexity of one model: totals, the layer table and the DCASE check."""

    params: int
    param_bytes: int
    macs: int
    table: pd.DataFrame  # one row per layer with parameters or MACs; shares are fractions of the totals
    dtype: torch.dtype
    input_size: tuple[int, ...]

    @property
    def fits_dcase(self) -> bool:
        """True when both DCASE limits hold (128,000 parameter bytes, 30 M MACs)."""
        return self.param_bytes <= MAX_PARAM_BYTES and self.macs <= MAX_MACS

    def by_block(self) -> pd.DataFrame:
        """Params and MACs summed per top-level block (the first part of each layer name), in forward order."""
        block = self.table["name"].str.split(".").str[0]
        grouped = self.table.assign(block=block).groupby("block", sort=False)[["params", "MACs"]].sum()
        grouped["params share"] = grouped["params"] / max(self.params, 1)
        grouped["MACs share"] = grouped["MACs"] / max(self.macs, 1)
        return grouped.reset_index()

    def summary(self) -> str:
        """Totals and the verdict against the DCASE limits, as text."""
        bits = torch.tensor([], dtype=self.dtype).element_size() * 8
        verdict = "fits" if self.fits_dcase else "does NOT fit"
        return (
            f"parameters: {self.params:,} -> {self.param_bytes:,} bytes at {bits}-bit ({str(self.dtype).removeprefix('torch.')}); "
            f"limit {MAX_PARAM_BYTES:,} bytes ({self.param_bytes / MAX_PARAM_BYTES:.1%})\n"
            f"MACs for input {list(self.input_size)}: {self.macs:,}; limit {MAX_MACS:,} ({self.macs / MAX_MACS:.1%})\n"
            f"-> {verdict} the DCASE2025 Task 1 limits"
        )

    def __str__(self) -> str:
        table = self.table.copy()
        for column in ("params", "MACs"):
            table[column] = table[column].map("{:,}".format)
            table[f"{column} share"] = (100 * table[f"{column} share"]).map("{:.1f} %".format)
        return table.to_string(index=False) + "\n\n" + self.summary()


def param_bytes(model: nn.Module, dtype: torch.dtype = torch.float16) -> int:
    """Bytes of model.parameters() stored at dtype (buffers such as BatchNorm running statistics excluded)."""
    return sum(p.numel() for p in model.parameters()) * torch.tensor([], dtype=dtype).element_size()


def complexity_report(model: nn.Module, input_size: Sequence[int] = DEFAULT_INPUT_SIZE, dtype: torch.dtype = torch.float16) -> ComplexityReport:
    """Count parameters, parameter bytes at dtype and torchinfo MACs (on a float32 CPU copy), with a layer-by-layer table."""
    from torchinfo import summary

    counted = copy.deepcopy(model).float().cpu()
    names = {id(m): name or "(model)" for name, m in counted.named_modules()}
    stats = summary(counted, input_size=tuple(input_size), verbose=0, device="cpu", mode="eval")
    rows, seen = [], set()
    for layer in stats.summary_list:
        if not layer.is_leaf_layer or (layer.num_params == 0 and layer.macs == 0):
            continue  # activations, pooling and dropout cost neither parameters nor MACs
        first_call = layer.layer_id not in seen
        seen.add(layer.layer_id)
        rows.append((names[layer.layer_id], layer.class_name, layer.output_size, layer.num_params if first_call else 0, layer.macs))
    # Parameters torchinfo never sees in a leaf layer: scalars owned by a parent module, and modules never called.
    for name, module in counted.named_modules():
        own = sum(p.numel() for p in module.parameters(recurse=False))
        if own and id(module) not in seen and any(module.children()):
            for pname, p in module.named_parameters(recurse=False):
                rows.append((f"{name}.{pname}" if name else pname, "Parameter", list(p.shape), p.numel(), 0))
        elif own and id(module) not in seen:
            rows.append((name, module.__class__.__name__, "(never called)", own, 0))
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS[:5])
    params = sum(p.numel() for p in model.parameters())
    table["params share"] = table["params"] / max(params, 1)
    table["MACs share"] = table["MACs"] / max(stats.total_mult_adds, 1)
    return ComplexityReport(params, param_bytes(model, dtype), int(stats.total_mult_adds), table, dtype, tuple(input_size))


ModelsArg = nn.Module | Mapping[str, nn.Module] | Callable[[str], nn.Module]


def complexity_json(models: ModelsArg, input_size: Sequence[int] = DEFAULT_INPUT_SIZE, dtype: torch.dtype = torch.float16,
                    devices: Sequence[str] = DCASE_COMPLEXITY_DEVICES, path: str | os.PathLike | None = None) -> dict:
    """The DCASE complexity.json dict (written to path if given) for one model, a mapping device -> model, or a callable.

    A mapping may hold a "general" model for the devices it does not list (as unknown devices fall back to it in DCASE).
    """
    if isinstance(models, nn.Module):
        get = lambda device: models  # noqa: E731 - one model for every device
    elif isinstance(models, Mapping):
        missing = [d for d in devices if d not in models and "general" not in models]
        if missing:
            raise ValueError(f"No model for devices {missing}: give a model per device, or a 'general' entry as fallback.")
        get = lambda device: models.get(device, models.get("general"))  # noqa: E731
    elif callable(models):
        get = models
    else:
        raise TypeError(f"Expected an nn.Module, a mapping device -> nn.Module or a callable; got {type(models).__name__}.")
    reports: dict[int, ComplexityReport] = {}  # the same model object is counted once
    per_device = {}
    for device in devices:
        model = get(device)
        if id(model) not in reports:
            reports[id(model)] = complexity_report(model, input_size, dtype)
        report = reports[id(model)]
        per_device[device] = {"MACs": report.macs, "Params": report.param_bytes}
    result = {
        "per_device": per_device,
        "max_MACs": max(d["MACs"] for d in per_device.values()),
        "max_Params": max(d["Params"] for d in per_device.values()),
    }
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result
