"""Batch augmentations of the recipe: device impulse responses (DIR), Frequency-MixStyle, frequency masking, time roll.

Every module here is a batch operation that runs on CPU and GPU, takes an optional ``torch.Generator`` (the same generator
and inputs give the same output; without one, ``torch.manual_seed`` makes them repeatable) and, like dropout, is the
identity in ``eval()`` mode. Loading, downloading and generating the impulse responses lives in ``asc_utils.dirs`` and is
re-exported here, so ``from asc_utils.augment import default_dirs, DIRAugment`` works.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from asc_utils.dirs import default_dirs, download_micirp, generated_dirs, load_dirs

__all__ = [
    "DIR_DEVICE",
    "DIRAugment",
    "FreqMixStyle",
    "FrequencyMask",
    "TimeRoll",
    "default_dirs",
    "download_micirp",
    "freq_mask",
    "generated_dirs",
    "load_dirs",
]

DIR_DEVICE = "a"  # DIR augmentation imitates other microphones on clips of the reference device only


def _rand(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Uniform [0, 1) numbers on `device`, drawn from `generator` (on its own device) or from torch's global generator."""
    if generator is None:
        return torch.rand(shape, device=device, dtype=dtype)
    return torch.rand(shape, generator=generator, device=generator.device, dtype=dtype).to(device)


def _randint(low: int, high: int, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Uniform integers in [low, high) on `device` (see `_rand` for the generator)."""
    if generator is None:
        return torch.randint(low, high, shape, device=device)
    return torch.randint(low, high, shape, generator=generator, device=generator.device).to(device)


def _fft_size(n: int) -> int:
    """The smallest length >= n whose only prime factors are 2, 3 and 5 (fast for every FFT library)."""
    size = n
    while True:
        rest = size
        for prime in (2, 3, 5):
            while rest % prime == 0:
                rest //= prime
        if rest == 1:
            return size
        size += 1


def _check_batch(waves: torch.Tensor, name: str) -> None:
    """Raise a readable error unless waves is a mono batch [B, 1, N]."""
    if waves.dim() != 3 or waves.shape[1] != 1:
        raise ValueError(f"{name} expects a batch of mono waveforms [B, 1, N]; got shape {tuple(waves.shape)}. Add the channel axis with waves.unsqueeze(1).")


class DIRAugment(nn.Module):
    """Convolve device-'a' waveforms, each with probability p, with a randomly chosen device impulse response (DIR).

    Called as ``aug(waves [B, 1, N], devices, generator=None) -> [B, 1, N]``. For a selected example the output is the
    full convolution with the DIR, truncated to the first N samples (the recipe's "keep the first 44,100 samples"); other
    examples, and all examples whose device is not 'a', are returned unchanged. The convolution is computed for the whole
    batch at once with real FFTs; the DIRs sit zero-padded in one buffer, so ``aug.to("cuda")`` moves them too.
    """

    def __init__(self, dirs: Sequence[torch.Tensor], p: float = 0.4) -> None:
        super().__init__()
        if len(dirs) == 0:
            raise ValueError("DIRAugment needs at least one impulse response; got an empty list. Use asc_utils.augment.default_dirs().")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"DIRAugment probability p must be in [0, 1]; got {p}.")
        flat = [torch.as_tensor(d, dtype=torch.float32).reshape(-1) for d in dirs]
        bank = torch.zeros(len(flat), max(d.numel() for d in flat))
        for i, d in enumerate(flat):
            bank[i, : d.numel()] = d
        self.p = float(p)
        self.register_buffer("dirs", bank, persistent=False)  # [K, L]; not saved in checkpoints

    @property
    def num_dirs(self) -> int:
        """How many impulse responses the augmentation chooses from."""
        return self.dirs.shape[0]

    def forward(self, waves: torch.Tensor, devices: Sequence[str], generator: torch.Generator | None = None) -> torch.Tensor:
        _check_batch(waves, "DIRAugment")
        batch, _, length = waves.shape
        if len(devices) != batch:
            raise ValueError(f"DIRAugment got {batch} waveforms but {len(devices)} device labels; pass one device id per example.")
        if not self.training or self.p == 0.0:
            return waves
        # Draw for every example (not only device 'a') so the random stream does not depend on the device mix.
        coin = _rand((batch,), generator, waves.device)
        choice = _randint(0, self.num_dirs, (batch,), generator, waves.device)
        is_a = torch.tensor([str(d) == DIR_DEVICE for d in devices], device=waves.device)
        selected = torch.nonzero(is_a & (coin < self.p)).flatten()
        if selected.numel() == 0:
            return waves
        x = waves[selected, 0].float()  # [M, N]
        h = self.dirs[choice[selected]]  # [M, L]
        n_fft = _fft_size(length + h.shape[-1] - 1)  # full linear convolution, no circular wrap-around
        y = torch.fft.irfft(torch.fft.rfft(x, n_fft) * torch.fft.rfft(h, n_fft), n_fft)[:, :length]
        out = waves.clone()
        out[selected, 0] = y.to(waves.dtype)
        return out

    def extra_repr(self) -> str:
        return f"num_dirs={self.num_dirs}, dir_length={self.dirs.shape[1]}, p={self.p}, device={DIR_DEVICE!r}"


def _beta(alpha: float, n: int, generator: torch.Generator | None) -> torch.Tensor:
    """n samples of Beta(alpha, alpha) on the CPU; with a generator, drawn under a seed taken from it (public API only)."""
    beta = torch.distributions.Beta(torch.tensor(float(alpha)), torch.tensor(float(alpha)))
    if generator is None:
        return beta.sample((n,))
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return beta.sample((n,))


class FreqMixStyle(nn.Module):
    """Frequency-MixStyle on log-mels [B, 1, F, T]: with probability p per batch, mix per-frequency statistics between examples.

    For each example and frequency bin, mean ``mu`` and standard deviation ``sig = sqrt(var + eps)`` are taken over channel
    and time (dims [1, 3]; ``var`` with Bessel's correction, as ``torch.var``) and detached from the graph. With
    ``lam ~ Beta(alpha, alpha)`` per example and a random permutation ``perm`` of the batch the output is
    ``(x - mu) / sig * (lam * sig + (1 - lam) * sig[perm]) + lam * mu + (1 - lam) * mu[perm]``,
    so each example keeps its content but takes on spectral statistics (a "device colouring") part-way to a partner's.
    """

    def __init__(self, p: float = 0.4, alpha: float = 0.3, eps: float = 1e-6) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"FreqMixStyle probability p must be in [0, 1]; got {p}.")
        if alpha <= 0:
            raise ValueError(f"FreqMixStyle alpha must be > 0 (Beta(alpha, alpha)); got {alpha}.")
        self.p, self.alpha, self.eps = float(p), float(alpha), float(eps)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"FreqMixStyle expects log-mels [B, C, F, T]; got shape {tuple(x.shape)}.")
        if not self.training or self.p == 0.0 or _rand((1,), generator, x.device).item() >= self.p:
            return x
        batch = x.shape[0]
        mu = x.mean(dim=(1, 3), keepdim=True).detach()  # [B, 1, F, 1]
        sig = (x.var(dim=(1, 3), keepdim=True) + self.eps).sqrt().detach()
        lam = _beta(self.alpha, batch, generator).to(x.device, x.dtype).view(batch, 1, 1, 1)
        if generator is None:
            perm = torch.randperm(batch).to(x.device)
        else:
            perm = torch.randperm(batch, generator=generator, device=generator.device).to(x.device)
        mu_mix = lam * mu + (1 - lam) * mu[perm]
        sig_mix = lam * sig + (1 - lam) * sig[perm]
        return (x - mu) / sig * sig_mix + mu_mix

    def extra_repr(self) -> str:
        return f"p={self.p}, alpha={self.alpha}, eps={self.eps}"


def freq_mask(spec: torch.Tensor, mask_param: int, generator: torch.Generator | None = None, mask_value: float = 0.0) -> torch.Tensor:
    """Set one band of [0, mask_param) consecutive frequency bins to mask_value, independently for every example and channel.

    Same rule as ``torchaudio.transforms.FrequencyMasking(mask_param, iid_masks=True)`` on a [B, C, F, T] batch: width
    ``w = floor(u1 * mask_param)`` and start ``floor(u2 * (F - u1 * mask_param))`` with u1, u2 uniform; without a generator
    it draws the same numbers as torchaudio, with a generator it is repeatable on its own.
    """
    if spec.dim() < 3:
        raise ValueError(f"freq_mask expects a spectrogram batch [..., F, T] with at least 3 dims; got shape {tuple(spec.shape)}.")
    if mask_param < 1:
        return spec
    n_freq = spec.shape[-2]
    lead = tuple(spec.shape[:-2])
    width = _rand(lead, generator, spec.device, spec.dtype) * mask_param
    start = (_rand(lead, generator, spec.device, spec.dtype) * (n_freq - width)).long()
    end = start + width.long()
    bins = torch.arange(n_freq, device=spec.device)
    masked = (bins >= start[..., None]) & (bins < end[..., None])  # [..., F]
    return spec.masked_fill(masked[..., None], mask_value)


class FrequencyMask(nn.Module):
    """Module form of `freq_mask` (the recipe uses 48 bins of 256 mels); identity in eval() mode."""

    def __init__(self, mask_param: int = 48) -> None:
        super().__init__()
        if mask_param < 0:
            raise ValueError(f"FrequencyMask mask_param must be >= 0 bins; got {mask_param}.")
        self.mask_param = int(mask_param)

    def forward(self, spec: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.training:
            return spec
        return freq_mask(spec, self.mask_param, generator)

    def extra_repr(self) -> str:
        return f"mask_param={self.mask_param}"


class TimeRoll(nn.Module):
    """Circularly shift each waveform [B, 1, N] by its own uniform integer in [-max_shift, max_shift] samples.

    The recipe's fine-tuning uses +-0.1 s, i.e. ``TimeRoll(4410)`` at 44.1 kHz. A positive shift moves the audio later
    (the end wraps around to the start), exactly like ``torch.roll(wave, shift, dims=-1)`` per example.
    """

    def __init__(self, max_shift: int) -> None:
        super().__init__()
        if max_shift < 0:
            raise ValueError(f"TimeRoll max_shift must be >= 0 samples; got {max_shift}.")
        self.max_shift = int(max_shift)

    def forward(self, waves: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_batch(waves, "TimeRoll")
        if not self.training or self.max_shift == 0:
            return waves
        batch, _, length = waves.shape
        shift = _randint(-self.max_shift, self.max_shift + 1, (batch,), generator, waves.device)
        index = (torch.arange(length, device=waves.device) - shift[:, None]) % length  # out[n] = x[n - shift]
        return waves.gather(-1, index[:, None, :])

    def extra_repr(self) -> str:
        return f"max_shift={self.max_shift}"
