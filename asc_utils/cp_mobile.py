"""The official DCASE2025 Task 1 baseline network (a simplified CP-Mobile), rebuilt from its published description.

Used in the tutorial only as a comparison architecture (61,148 parameters, 29,419,156 MACs). Its front end differs from
the SNTL one: 32 kHz audio, n_fft 4096, window 3072, hop 500, 256 mels, log(mel + 1e-5), so 1 s gives
1 + 32000 // 500 = 65 frames and the input is [B, 1, 256, 65]. Strides are (frequency, time).
"""

from __future__ import annotations

import torch
from torch import nn


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of `divisor` (at least `divisor`, never more than 10 % below `value`)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int | tuple[int, int] = 1, groups: int = 1, relu: bool = True) -> nn.Sequential:
    """Conv (no bias, 'same' padding for odd kernels) + BatchNorm2d, optionally + ReLU."""
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class InvertedBottleneck(nn.Module):
    """Expand 1x1 -> depthwise 3x3 (with the block's stride) -> project 1x1, a shortcut when widths match, then ReLU."""

    def __init__(self, c_in: int, c_out: int, expansion_rate: float, stride: tuple[int, int] = (1, 1)) -> None:
        super().__init__()
        hidden = make_divisible(c_in * expansion_rate)
        self.expand = conv_bn(c_in, hidden, 1)
        self.depthwise = conv_bn(hidden, hidden, 3, stride=stride, groups=hidden)
        self.project = conv_bn(hidden, c_out, 1, relu=False)
        self.has_shortcut = c_in == c_out
        # With a stride, the shortcut must shrink too: average pooling with the same stride.
        self.shortcut = nn.AvgPool2d(3, stride=stride, padding=1) if self.has_shortcut and stride != (1, 1) else nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C_in, F, T] -> [B, C_out, F / stride, T / stride]."""
        y = self.project(self.depthwise(self.expand(x)))
        if self.has_shortcut:
            y = y + self.shortcut(x)
        return self.relu(y)


class CPMobile(nn.Module):
    """Simplified CP-Mobile (DCASE2025 baseline): log-mel [B, 1, 256, 65] -> logits [B, 10]."""

    def __init__(self, n_classes: int = 10, base_channels: int = 32, channels_multiplier: float = 1.8,
                 expansion_rate: float = 2.1, blocks_per_stage: tuple[int, ...] = (3, 2, 1)) -> None:
        super().__init__()
        self.in_c = nn.Sequential(
            conv_bn(1, base_channels // 4, 3, stride=2),
            conv_bn(base_channels // 4, base_channels, 3, stride=2),
        )
        # Which block (numbered from 1 over all stages) downsamples: b3 halves time, b4 halves frequency.
        strides = {3: (1, 2), 4: (2, 1)}
        blocks, c_in, number = [], base_channels, 0
        for stage, n_blocks in enumerate(blocks_per_stage):
            width = make_divisible(base_channels * channels_multiplier**stage)
            for _ in range(n_blocks):
                number += 1
                blocks.append(InvertedBottleneck(c_in, width, expansion_rate, strides.get(number, (1, 1))))
                c_in = width
        self.stages = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.Conv2d(c_in, n_classes, 1, bias=False),
            nn.BatchNorm2d(n_classes),
            nn.AdaptiveAvgPool2d(1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log-mel [B, 1, 256, 65] -> logits [B, 10]."""
        return self.head(self.stages(self.in_c(x))).flatten(1)
