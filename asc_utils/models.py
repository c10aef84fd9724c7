"""The SNTL-NTU CNN-GRU (DCASE2025 Task 1, both published variants) and `build_model`, the one way to create a network.

The step numbers in the docstrings ("step 7") are those of the layer-by-layer description of the system
(`docs/system.md` of the reference material): read the two side by side. Shapes are written per example as
[channels, frequency, time]; the input is a log-mel spectrogram [B, 1, 256, 33] (1 s of audio).

Module names explain themselves (`stem`, `max_branch.se`, `gru` ...); `asc_utils.pretrained` maps the published
weights' cryptic names (`conv2d_1_0`, `codw2d_2_1L`, `se_1_1` ...) onto them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MODEL_NAMES: tuple[str, ...] = ("sntl_task1_1", "sntl_task1_2", "cp_mobile_baseline")
# The log-mel input each network expects for 1 s of audio, batch 1 (used for complexity reports).
MODEL_INPUT_SIZES: dict[str, tuple[int, int, int, int]] = {
    "sntl_task1_1": (1, 1, 256, 33),
    "sntl_task1_2": (1, 1, 256, 33),
    "cp_mobile_baseline": (1, 1, 256, 65),
}


class ConvBN(nn.Sequential):
    """A convolution without bias followed by its own BatchNorm2d (no activation: the caller adds SiLU where it belongs)."""

    def __init__(self, c_in: int, c_out: int, kernel: int | tuple[int, int], stride: int | tuple[int, int] = 1,
                 padding: int | tuple[int, int] = 0, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """conv, then BatchNorm."""
        return self.bn(self.conv(x))


class SqueezeExcitation(nn.Module):
    """Channel attention: average each channel over F and T, two small Linear layers, a sigmoid gate per channel (steps 5, 7)."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.squeeze = nn.Linear(channels, hidden)
        self.excite = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, F, T] -> the same shape, each channel scaled by its gate."""
        weights = x.mean(dim=(2, 3))  # [B, C]
        weights = torch.sigmoid(self.excite(F.relu(self.squeeze(weights))))
        return x * weights[:, :, None, None]


class Branch(nn.Module):
    """One of the two twin branches of step 7: [24, 128, 16] -> [72, 64, 8] (separate weights for the max and avg branch)."""

    def __init__(self) -> None:
        super().__init__()
        self.pointwise = ConvBN(24, 36, 1)  # 1x1: mix channels, 24 -> 36
        self.freq_conv = ConvBN(36, 72, (5, 1), padding=(2, 0), groups=36)  # along frequency, 2 filters per channel
        self.time_conv = ConvBN(72, 72, (1, 5), stride=(2, 2), padding=(0, 2), groups=72)  # depthwise along time, halves F, T
        self.se = SqueezeExcitation(72, 36)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 24, 128, 16] -> [B, 72, 64, 8]."""
        x = self.time_conv(self.freq_conv(self.pointwise(x)))
        return self.se(F.silu(x))


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of `groups` groups (task1_1 only), e.g. 12 channels, 6 groups: [0,2,4,..,10,1,3,..,11]."""
    b, c, f, t = x.shape
    return x.view(b, groups, c // groups, f, t).transpose(1, 2).reshape(b, c, f, t)


class SNTLNet(nn.Module):
    """The SNTL-NTU CNN-GRU: log-mel [B, 1, 256, 33] -> logits [B, 10].

    `variant="task1_2"` is the layer table of the team's README (58,605 parameters, two of its modules unused);
    `variant="task1_1"` adds two channel shuffles and a SiLU before the classifier and drops the unused modules (58,171).
    """

    def __init__(self, variant: str = "task1_2", n_classes: int = 10) -> None:
        super().__init__()
        if variant not in ("task1_1", "task1_2"):
            raise ValueError(f"Unknown SNTL variant '{variant}': expected 'task1_1' or 'task1_2'.")
        self.variant = variant
        # Steps 1-5: stem, from one log-mel channel to 24 channels at full resolution [24, 256, 33].
        self.stem = ConvBN(1, 7, 3, padding=1)  # step 1: 3x3, no activation
        self.expand = ConvBN(7, 12, 1)  # step 2: pointwise 1x1
        self.freq_conv = ConvBN(12, 24, (3, 1), padding=(1, 0), groups=12)  # step 3: factorised conv, frequency part
        self.time_conv = ConvBN(24, 24, (1, 3), padding=(0, 1), groups=12)  # step 4: factorised conv, time part (+ SiLU)
        self.stem_se = SqueezeExcitation(24, 12)  # step 5
        # Steps 6-7: twin branches after MaxPool2d(2) and AvgPool2d(2) of the same tensor.
        self.max_branch = Branch()
        self.avg_branch = Branch()
        # Step 9: learnable scalar mixing weights (published names param1..param4), each starting at 0.5.
        self.mix_avg = nn.Parameter(torch.tensor(0.5))  # param1: avg-pooled avg branch vs avg-pooled max branch
        self.mix_max = nn.Parameter(torch.tensor(0.5))  # param2: max-pooled max branch vs max-pooled avg branch
        self.mix_head = nn.Parameter(torch.tensor(0.5))  # param3: used in step 15 only (mel mean vs GRU mean)
        self.mix_pools = nn.Parameter(torch.tensor(0.5))  # param4: the avg-pooled mix vs the max-pooled mix
        # Steps 10-12: residual pointwise, then down to 28 channels.
        self.residual_pointwise = ConvBN(72, 72, 1)  # step 10
        self.down_conv = ConvBN(72, 144, (5, 1), stride=(2, 1), padding=(2, 0), groups=72)  # step 11 (+ SiLU, Dropout2d)
        self.dropout2d = nn.Dropout2d(0.3)
        self.to_28_conv = ConvBN(144, 28, (5, 1), padding=(2, 0))  # step 12 (+ SiLU)
        # Steps 13-16: the GRU reads the 28 channels as a sequence of 28 vectors of 16 frequency features.
        self.gru = nn.GRU(input_size=16, hidden_size=64, num_layers=1, batch_first=True)  # step 14
        self.dropout1d = nn.Dropout1d(0.5)
        self.classifier = nn.Conv1d(1, n_classes, kernel_size=28)  # step 16: one weight per sequence position
        if variant == "task1_2":
            # Step 17: defined in the published task1_2 model but NEVER used in forward(). Kept because they are part of
            # its published weights and count toward its 58,605 parameters / 117,210 bytes (unused weights still cost memory).
            self.unused_norm = nn.BatchNorm2d(72)
            self.unused_linear = nn.Linear(28, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log-mel [B, 1, 256, 33] -> logits [B, 10]."""
        x = self.expand(self.stem(x))  # steps 1-2: [12, 256, 33]
        if self.variant == "task1_1":
            x = channel_shuffle(x, 6)
        x = F.silu(self.time_conv(self.freq_conv(x)))  # steps 3-4: [24, 256, 33]
        x = self.stem_se(x)  # step 5
        xm = self.max_branch(F.max_pool2d(x, 2))  # steps 6-7: [72, 64, 8]
        xa = self.avg_branch(F.avg_pool2d(x, 2))
        m1, m2 = F.max_pool2d(xm, 2), F.avg_pool2d(xm, 2)  # step 8: [72, 32, 4] each
        a1, a2 = F.avg_pool2d(xa, 2), F.max_pool2d(xa, 2)
        avg_pooled = self.mix_avg * a1 + (1 - self.mix_avg) * m2  # step 9
        max_pooled = self.mix_max * m1 + (1 - self.mix_max) * a2
        x = self.mix_pools * avg_pooled + (1 - self.mix_pools) * max_pooled
        x = self.residual_pointwise(x) + x  # step 10
        if self.variant == "task1_1":
            x = channel_shuffle(x, 36)
        x = self.dropout2d(F.silu(self.down_conv(x)))  # step 11: [144, 16, 4]
        x = F.silu(self.to_28_conv(x))  # step 12: [28, 16, 4]
        z = x.mean(dim=3)  # step 13: [28, 16], a sequence of 28 positions with 16 features
        g, _ = self.gru(z)  # step 14: [28, 64], zero initial hidden state
        g = self.dropout1d(g)
        h = self.mix_head * z.mean(dim=2) + (1 - self.mix_head) * g.mean(dim=2)  # step 15: [28]
        if self.variant == "task1_1":
            h = F.silu(h)
        return self.classifier(h.unsqueeze(1)).squeeze(-1)  # step 16: [B, 1, 28] -> [B, 10, 1] -> [B, 10]


def build_model(name: str = "sntl_task1_2") -> nn.Module:
    """Create a freshly initialised network by name: 'sntl_task1_1', 'sntl_task1_2' (default) or 'cp_mobile_baseline'."""
    if name == "sntl_task1_1":
        return SNTLNet("task1_1")
    if name == "sntl_task1_2":
        return SNTLNet("task1_2")
    if name == "cp_mobile_baseline":
        from asc_utils.cp_mobile import CPMobile

        return CPMobile()
    raise ValueError(f"Unknown model name '{name}'. Valid names: {', '.join(MODEL_NAMES)}.")
