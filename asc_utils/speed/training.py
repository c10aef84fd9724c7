"""Memory layout for CPU training: channels-last where oneDNN's grouped convolutions need it, NCHW where BatchNorm prefers it.

Measured on a 2-core CPU (batch 64, fp32, one thread): channels-last makes the backward pass of the SNTL network's small
grouped and depthwise convolutions several times faster than NCHW, but BatchNorm over only 7 or 12 channels at full
resolution is about 5x slower in channels-last. Keeping the stem and the first pointwise convolution (7 and 12 output
channels) in NCHW and everything after them in channels-last trains about 7 % faster than channels-last throughout.
The layout changes the speed only: every parameter keeps its values, the arithmetic is the same.
"""

from __future__ import annotations

import torch
from torch import nn

from asc_utils.models import ConvBN, SNTLNet


def to_training_layout(model: nn.Module) -> nn.Module:
    """Channels-last parameters for training (in place; returns the model), except the SNTL stem and expand convolutions.

    Also switches on `ConvBN.repeat_shortcut`: oneDNN's kernels for a convolution with one input and two outputs per group
    (steps 3 and 7) are slow; a depthwise convolution over the repeated channels computes the same, forward + backward
    1.6-1.8x faster (benchmarks/RESULTS.md).
    """
    model.to(memory_format=torch.channels_last)
    if isinstance(model, SNTLNet):
        for module in (model.stem, model.expand):  # 7 and 12 channels: NCHW BatchNorm is ~5x faster there
            module.to(memory_format=torch.contiguous_format)
    _set_repeat_shortcut(model, True)
    return model


def from_training_layout(model: nn.Module) -> nn.Module:
    """Undo `to_training_layout` (in place; returns the model): NCHW parameters, every convolution run as itself."""
    model.to(memory_format=torch.contiguous_format)
    _set_repeat_shortcut(model, False)
    return model


def _set_repeat_shortcut(model: nn.Module, on: bool) -> None:
    """Switch `ConvBN.repeat_shortcut` of every ConvBN in the model."""
    for module in model.modules():
        if isinstance(module, ConvBN):
            module.repeat_shortcut = on
