"""Fast CPU inference for the SNTL network: the same function, rewritten for eval mode (BatchNorm folded, linear chains merged).

`for_inference(model)` returns an eval-only copy that gives the same logits as `model.eval()` up to float rounding
(the tests check max |difference| and identical predictions); benchmarks/RESULTS.md has how much faster it runs than
the eager model. What it changes, all exact algebra:

- every BatchNorm is folded into the weights and bias of the convolution before it;
- stem 3x3 (1 -> 7) and the pointwise 1x1 (7 -> 12) have no activation between them: one 3x3 convolution 1 -> 12;
- a frequency conv (k, 1) followed by a time conv (1, k) with no activation between them is one (k, k) *depthwise*
  convolution once each input channel is duplicated (the duplication is folded into the convolution before it); the
  only catch is the time conv's zero padding, which also hides the frequency conv's bias at the border columns: those
  few columns get a bias correction;
- in each branch, the time conv has stride 2 along frequency, so only every other row of the frequency conv is needed;
- max- and average-pooling commute with the (positive) squeeze-excitation gates: gating after pooling multiplies 4x fewer values;
- the residual add is folded into the 1x1 convolution (W + I), task1_1's channel shuffles into weight orders;
- activations stay channels-last (NHWC), where oneDNN's depthwise kernels are several times faster than in NCHW;
- large batches are processed in chunks of `chunk` clips so that the full-resolution maps stay in the CPU cache, one chunk
  per thread (`asc_utils.speed.threads.map_chunks`).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from asc_utils.models import SNTLNet
from asc_utils.multidevice import MultiDeviceModel
from asc_utils.speed.threads import map_chunks

CHANNELS_LAST = torch.channels_last


def fold_conv_bn(conv_bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) in fp32 of a conv without bias followed by BatchNorm (eval statistics): one convolution."""
    conv, bn = conv_bn.conv, conv_bn.bn
    scale = bn.weight.float() / torch.sqrt(bn.running_var.float() + bn.eps)
    weight = conv.weight.float() * scale.view(-1, 1, 1, 1)
    return weight.detach().clone(), (bn.bias.float() - bn.running_mean.float() * scale).detach().clone()


class FreqTimeConv(nn.Module):
    """A frequency conv (kf, 1) then a time conv (1, kt), both conv+BN without activation between, as one depthwise (kf, kt) conv.

    Input: the duplicated channels (`source[c]` = which channel of the original input feeds output channel c).
    """

    def __init__(self, freq: nn.Module, time: nn.Module) -> None:
        super().__init__()
        wf, bf = fold_conv_bn(freq)
        wt, bt = fold_conv_bn(time)
        cf, ct = freq.conv, time.conv
        if cf.kernel_size[1] != 1 or ct.kernel_size[0] != 1 or cf.stride != (1, 1) or cf.padding[1] != 0 or ct.padding[0] != 0:
            raise ValueError("FreqTimeConv expects a (k, 1) conv with stride 1 followed by a (1, k) conv.")
        mult, in_per_group, out_per_group = cf.out_channels // cf.groups, ct.in_channels // ct.groups, ct.out_channels // ct.groups
        kernel = torch.zeros(ct.out_channels, 1, wf.shape[2], wt.shape[3])
        source = []
        for o in range(ct.out_channels):
            group = range(o // out_per_group * in_per_group, (o // out_per_group + 1) * in_per_group)
            inputs = {c // mult for c in group}
            if len(inputs) != 1:
                raise ValueError("FreqTimeConv: a time-conv group mixes channels of different input channels.")
            source.append(inputs.pop())
            for i, c in enumerate(group):
                kernel[o, 0] += wf[c, 0, :, 0, None] * wt[o, i, 0, None, :]
        self.register_buffer("kernel", kernel)
        self.register_buffer("freq_bias", bf)
        self.register_buffer("time_weight", wt)
        self.register_buffer("time_bias", bt)
        self.time_groups = ct.groups
        self.source = torch.tensor(source)
        self.stride = (ct.stride[0], ct.stride[1])  # kernel height 1: the time conv's row stride just skips rows
        self.padding = (cf.padding[0], ct.padding[1])
        self._border: dict[int, tuple[torch.Tensor, list[int], torch.Tensor]] = {}

    def border(self, width: int) -> tuple[torch.Tensor, list[int], torch.Tensor]:
        """(interior bias [C], border columns, their bias corrections [columns, C]) for inputs `width` frames wide."""
        if width not in self._border:
            # the time conv applied to the frequency conv's constant bias, zero padded like the real one
            field = self.freq_bias.view(1, -1, 1, 1).expand(1, -1, 1, width)
            bias_map = F.conv2d(field, self.time_weight, self.time_bias, stride=(1, self.stride[1]),
                                padding=(0, self.padding[1]), groups=self.time_groups)[0, :, 0]  # [C, columns]
            interior = bias_map[:, bias_map.shape[1] // 2].clone()
            columns = [t for t in range(bias_map.shape[1]) if not torch.equal(bias_map[:, t], interior)]
            self._border[width] = (interior, columns, (bias_map[:, columns] - interior[:, None]).t().contiguous())
        return self._border[width]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        interior, columns, fixes = self.border(x.shape[3])
        y = F.conv2d(x, self.kernel, interior, stride=self.stride, padding=self.padding, groups=self.kernel.shape[0])
        for fix, t in zip(fixes, columns):
            y[:, :, :, t] += fix.view(1, -1, 1)
        return y


def _pool_max_avg(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MaxPool2d(2) and AvgPool2d(2) of a channels-last [B, C, F, T] in one pass over pairs of rows, then pairs of columns."""
    f, t = x.shape[2] // 2 * 2, x.shape[3] // 2 * 2
    rows = x.permute(0, 2, 3, 1)[:, :f, :t].unflatten(1, (f // 2, 2))  # [B, F/2, 2, T, C]
    top, bottom = rows[:, :, 0], rows[:, :, 1]
    high, total = torch.maximum(top, bottom), top + bottom
    high = torch.maximum(high[:, :, 0::2], high[:, :, 1::2])
    mean = (total[:, :, 0::2] + total[:, :, 1::2]).mul_(0.25)
    return high.permute(0, 3, 1, 2), mean.permute(0, 3, 1, 2)


class _Gate(nn.Module):
    """The squeeze-excitation gate [B, C, 1, 1] of a map (the multiplication is left to the caller)."""

    def __init__(self, se: nn.Module) -> None:
        super().__init__()
        self.squeeze, self.excite = copy.deepcopy(se.squeeze).float(), copy.deepcopy(se.excite).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.excite(F.relu(self.squeeze(x.mean(dim=(2, 3))))))[:, :, None, None]


class _FastBranch(nn.Module):
    """Step 7 of one twin branch: pointwise (duplicated outputs) + merged freq/time conv + SiLU; returns the map and its gate."""

    def __init__(self, branch: nn.Module) -> None:
        super().__init__()
        self.freq_time = FreqTimeConv(branch.freq_conv, branch.time_conv)
        weight, bias = fold_conv_bn(branch.pointwise)
        self.register_buffer("weight", weight[self.freq_time.source].contiguous())
        self.register_buffer("bias", bias[self.freq_time.source].contiguous())
        self.gate = _Gate(branch.se)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = F.silu(self.freq_time(F.conv2d(x, self.weight, self.bias)), inplace=True)
        return y, self.gate(y)


def _shuffle_order(channels: int, groups: int) -> torch.Tensor:
    """The channel order of models.channel_shuffle: output channel i is input channel order[i]."""
    return torch.arange(channels).view(groups, channels // groups).t().reshape(-1)


class FastSNTL(nn.Module):
    """Eval-only SNTLNet: log-mel [B, 1, 256, 33] -> logits [B, 10], equal to the source network's eval() output up to rounding."""

    def __init__(self, net: SNTLNet, chunk: int = 8) -> None:
        super().__init__()
        if not isinstance(net, SNTLNet):
            raise TypeError(f"FastSNTL rewrites an asc_utils.models.SNTLNet; got {type(net).__name__}.")
        self.variant, self.chunk = net.variant, chunk
        stem_w, stem_b = fold_conv_bn(net.stem)
        expand_w, expand_b = fold_conv_bn(net.expand)
        weight = torch.einsum("oc,cikl->oikl", expand_w[:, :, 0, 0], stem_w)  # steps 1-2: one 3x3 conv 1 -> 12
        bias = expand_w[:, :, 0, 0] @ stem_b + expand_b
        if self.variant == "task1_1":  # the shuffle after step 2 reorders the 12 channels
            order = _shuffle_order(12, 6)
            weight, bias = weight[order], bias[order]
        self.freq_time = FreqTimeConv(net.freq_conv, net.time_conv)  # steps 3-4
        self.register_buffer("stem_weight", weight[self.freq_time.source].contiguous())
        self.register_buffer("stem_bias", bias[self.freq_time.source].contiguous())
        self.stem_gate = _Gate(net.stem_se)  # step 5
        self.max_branch, self.avg_branch = _FastBranch(net.max_branch), _FastBranch(net.avg_branch)  # steps 6-7
        self.register_buffer("mix", torch.stack([net.mix_avg, net.mix_max, net.mix_head, net.mix_pools]).detach().float().clone())
        res_w, res_b = fold_conv_bn(net.residual_pointwise)  # step 10: conv(x) + x = conv with W + I
        res_w = res_w + torch.eye(72).view(72, 72, 1, 1)
        if self.variant == "task1_1":  # the shuffle after the residual add reorders its output channels
            order = _shuffle_order(72, 36)
            res_w, res_b = res_w[order], res_b[order]
        self.register_buffer("res_weight", res_w)
        self.register_buffer("res_bias", res_b)
        self.down_conv = self._conv_from(net.down_conv)  # step 11 (Dropout2d is the identity in eval)
        self.to_28_conv = self._conv_from(net.to_28_conv)  # step 12
        self.gru = copy.deepcopy(net.gru).float()  # step 14
        self.classifier = copy.deepcopy(net.classifier).float()  # step 16
        self.eval()

    @staticmethod
    def _conv_from(conv_bn: nn.Module) -> nn.Conv2d:
        """A plain Conv2d with bias equal to conv+BN in eval mode."""
        c = conv_bn.conv
        conv = nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding, groups=c.groups, bias=True)
        weight, bias = fold_conv_bn(conv_bn)
        conv.weight.data.copy_(weight)
        conv.bias.data.copy_(bias)
        return conv

    def train(self, mode: bool = True) -> FastSNTL:
        """Eval only: BatchNorm is folded, so training mode would silently give wrong results."""
        if mode:
            raise RuntimeError("FastSNTL is for inference only (its BatchNorms are folded); train the original network instead.")
        return super().train(False)

    @torch.inference_mode()
    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """Log-mel [B, 1, 256, 33] (any float dtype) -> fp32 logits [B, 10], `chunk` clips at a time."""
        parts = map_chunks(self._features, mel.float().split(self.chunk))
        features = torch.cat(parts) if len(parts) > 1 else parts[0]
        # the small tail (a GRU of 28 steps) costs per call, not per clip: run it on big chunks, one per thread
        per_thread = max(self.chunk, -(-len(features) // torch.get_num_threads()))
        parts = map_chunks(self._head, features.split(per_thread))
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """Steps 1-9 on a chunk: log-mel [b, 1, 256, 33] -> the mixed branch maps [b, 72, 32, 4]."""
        b, _, f, t = x.shape
        # a one-channel input is both NCHW and NHWC; this layout makes oneDNN return a channels-last output
        nhwc = x.new_empty(b, f, t, 2)[..., :1].permute(0, 3, 1, 2)
        nhwc.copy_(x)
        x = F.conv2d(nhwc, self.stem_weight, self.stem_bias, padding=1).contiguous(memory_format=CHANNELS_LAST)
        x = F.silu(self.freq_time(x), inplace=True)
        high, mean = _pool_max_avg(x)  # gate after pooling: max(g * x) = g * max(x) for g > 0
        gate = self.stem_gate(x)
        xm, gate_m = self.max_branch(high * gate)
        xa, gate_a = self.avg_branch(mean * gate)
        m1, m2 = _pool_max_avg(xm)
        a2, a1 = _pool_max_avg(xa)
        p_avg, p_max, p_head, p_pools = self.mix
        avg_pooled = p_avg * gate_a * a1 + (1 - p_avg) * gate_m * m2  # step 9
        max_pooled = p_max * gate_m * m1 + (1 - p_max) * gate_a * a2
        return (p_pools * avg_pooled + (1 - p_pools) * max_pooled).contiguous()

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        """Steps 10-16: [b, 72, 32, 4] -> logits [b, 10]."""
        p_head = self.mix[2]
        x = F.conv2d(x, self.res_weight, self.res_bias)
        x = F.silu(self.down_conv(x))
        x = F.silu(self.to_28_conv(x))
        z = x.mean(dim=3)  # [B, 28, 16]
        g, _ = self.gru(z)
        h = p_head * z.mean(dim=2) + (1 - p_head) * g.mean(dim=2)
        if self.variant == "task1_1":
            h = F.silu(h)
        return self.classifier(h.unsqueeze(1)).squeeze(-1)


def for_inference(model: nn.Module, chunk: int = 8) -> nn.Module:
    """An eval-only fast copy of a network (SNTLNet: FastSNTL; a MultiDeviceModel: each of its networks); others: an eval copy."""
    if isinstance(model, FastSNTL):
        return model
    if isinstance(model, SNTLNet):
        return FastSNTL(model, chunk=chunk)
    if isinstance(model, MultiDeviceModel):
        devices = {d: for_inference(m, chunk) for d, m in model.device_models.items()}
        return MultiDeviceModel(for_inference(model.general, chunk), devices, model_name=model.model_name,
                                frontend_config=model.frontend_config).eval()
    return copy.deepcopy(model).eval()
