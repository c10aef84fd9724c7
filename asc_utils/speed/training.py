"""The training layout of the SNTL network: the same parameters and arithmetic, arranged for fast CPU training.

`for_training(model)` changes, in place and reversibly (`plain_layout`), only how the network computes:

- parameters channels-last, where oneDNN's backward kernels for the small grouped and depthwise convolutions are fast,
  except the 7- and 12-channel stem convolutions, whose BatchNorms are faster in NCHW;
- a grouped convolution with one input and several outputs per group (steps 3 and 7 of the system description) runs as a
  depthwise convolution over the repeated input channels (`RepeatedInputConv2d`), with a backward that adds the copies up;
- squeeze-excitation takes its mean as a sum times 1/N, whose backward is a broadcast view instead of a full-size copy.

Both swaps change a module's class, never its parameters: the optimiser, state dicts and checkpoints are unaffected.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from asc_utils.models import SNTLNet, SqueezeExcitation


class _RepeatChannelsLast(torch.autograd.Function):
    """Channels-last [B, C, F, T] -> [B, C * m, F, T], channels c0, c0, c1, c1, ...; the backward adds the copies back up."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, times: int) -> torch.Tensor:
        b, c, f, t = x.shape
        ctx.times = times
        nhwc = x.permute(0, 2, 3, 1)  # a view: [B, F, T, C], contiguous
        return nhwc.unsqueeze(-1).expand(b, f, t, c, times).reshape(b, f, t, c * times).permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        b, cm, f, t = grad.shape
        copies = grad.permute(0, 2, 3, 1).reshape(b, f, t, cm // ctx.times, ctx.times)
        total = copies[..., 0].clone()  # adding strided views is faster than sum(dim=-1) over 2-4 values
        for k in range(1, ctx.times):
            total += copies[..., k]
        return total.permute(0, 3, 1, 2), None


class RepeatedInputConv2d(nn.Conv2d):
    """A grouped conv with one input channel per group, run on the CPU as a depthwise conv over repeated inputs (same sums)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Equal to nn.Conv2d.forward up to float rounding."""
        if x.device.type != "cpu":
            return super().forward(x)
        x = _RepeatChannelsLast.apply(x.contiguous(memory_format=torch.channels_last), self.out_channels // self.in_channels)
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.out_channels)


class SumMeanSqueezeExcitation(SqueezeExcitation):
    """SqueezeExcitation whose channel mean is a sum times 1/N: the backward of `mean` writes a full-size copy, this one not."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Equal to SqueezeExcitation.forward up to float rounding."""
        weights = x.sum(dim=(2, 3)) * (1.0 / (x.shape[2] * x.shape[3]))
        weights = torch.sigmoid(self.excite(F.relu(self.squeeze(weights))))
        return x * weights[:, :, None, None]


def _repeats_input(conv: nn.Module) -> bool:
    """True for a conv with one input channel per group and several outputs per group."""
    return (type(conv) is nn.Conv2d and conv.groups == conv.in_channels > 1 and conv.out_channels > conv.in_channels)


def for_training(model: nn.Module) -> nn.Module:
    """Switch a model to the training layout (in place; returns it). Other networks than SNTLNet only go channels-last."""
    model.to(memory_format=torch.channels_last)
    if isinstance(model, SNTLNet):
        for module in (model.stem, model.expand):  # 7 and 12 channels: NCHW BatchNorm is faster there
            module.to(memory_format=torch.contiguous_format)
        for module in model.modules():
            if _repeats_input(module):
                module.__class__ = RepeatedInputConv2d
            elif type(module) is SqueezeExcitation:
                module.__class__ = SumMeanSqueezeExcitation
    return model


def plain_layout(model: nn.Module) -> nn.Module:
    """Undo `for_training` (in place; returns the model): NCHW parameters, every module of its readable class."""
    model.to(memory_format=torch.contiguous_format)
    for module in model.modules():
        if type(module) is RepeatedInputConv2d:
            module.__class__ = nn.Conv2d
        elif type(module) is SumMeanSqueezeExcitation:
            module.__class__ = SqueezeExcitation
    return model
