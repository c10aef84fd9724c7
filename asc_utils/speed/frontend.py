"""A fast CPU log-mel front end: a mel spectrogram that computes the same numbers as torchaudio's `MelSpectrogram` (within float rounding).

torchaudio runs `torch.stft`, takes `abs().pow(2)` of the complex spectrum and multiplies it with the dense
[n_fft // 2 + 1, n_mels] filterbank. For the SNTL settings (n_fft 8192, 256 mels) that matrix is 99 % zeros: every
frequency bin belongs to at most two neighbouring triangular filters. This module does the same arithmetic with less work:

1. reflect-pad and cut the windowed frames itself, a few clips at a time, so that the frames (1 MB per clip) and their
   spectra stay in the CPU cache instead of streaming hundreds of MB through memory for a batch of 256;
2. one `torch.fft.rfft` over all frames of the chunk;
3. squares the real and imaginary parts in place and applies the filterbank as small dense blocks: each group of
   `bands_per_block` mel bands only reads the contiguous range of bins where its filters are non-zero.

The only difference to torchaudio is the order of the additions (float rounding, ~1e-6 on the log-mel); the tests
compare the two on random and real audio.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from asc_utils.features import FrontendConfig, LogMelFrontend
from asc_utils.speed.threads import map_chunks


@functools.lru_cache(maxsize=8)
def _plan(sample_rate: int, n_fft: int, win_length: int, n_mels: int, f_min: float, f_max: float | None,
          bands_per_block: int) -> tuple[torch.Tensor, tuple[tuple[int, int, int, int], ...], torch.Tensor]:
    """(window [n_fft], blocks (first band, end band, first column, end column), their weights, flattened) of one setting."""
    import torchaudio

    window = torch.zeros(n_fft)
    left = (n_fft - win_length) // 2  # torch.stft centres a shorter window inside n_fft
    window[left : left + win_length] = torch.hann_window(win_length)
    n_freqs = n_fft // 2 + 1
    fb = torchaudio.functional.melscale_fbanks(n_freqs, f_min, f_max if f_max is not None else sample_rate / 2, n_mels, sample_rate)
    # the filterbank with every row repeated: it multiplies the squared (re, im) pairs of view_as_real(spectrum)
    fb2 = fb.repeat_interleave(2, dim=0)
    nonzero = fb.ne(0)
    used = nonzero.any(dim=0).tolist()
    first = nonzero.float().argmax(dim=0).tolist()  # first and last bin of each band's triangle
    last = (n_freqs - 1 - nonzero.flip(0).float().argmax(dim=0)).tolist()
    blocks, weights = [], []
    for a in range(0, n_mels, bands_per_block):
        b = min(n_mels, a + bands_per_block)
        bands = [m for m in range(a, b) if used[m]]
        if not bands:  # bands without any bin (possible for many mels and a small n_fft): they stay zero
            continue
        k0, k1 = 2 * min(first[m] for m in bands), 2 * (max(last[m] for m in bands) + 1)
        blocks.append((a, b, k0, k1))
        weights.append(fb2[k0:k1, a:b].t().contiguous().flatten())  # [bands, bins] row-major
    return window, tuple(blocks), torch.cat(weights) if weights else torch.zeros(0)


class FastMelSpectrogram(nn.Module):
    """Mel power [B, N] -> [B, n_mels, frames] as torchaudio's MelSpectrogram (power 2, centered, reflect pad, HTK, no norm)."""

    def __init__(self, sample_rate: int = 44_100, n_fft: int = 8192, win_length: int | None = None, hop_length: int = 1364,
                 n_mels: int = 256, f_min: float = 0.0, f_max: float | None = None, chunk_clips: int = 4,
                 bands_per_block: int = 8) -> None:
        super().__init__()
        win_length = win_length or n_fft
        if win_length > n_fft:
            raise ValueError(f"win_length ({win_length}) must not exceed n_fft ({n_fft}).")
        self.n_fft, self.hop_length, self.n_mels, self.chunk_clips = n_fft, hop_length, n_mels, chunk_clips
        window, self.blocks, weights = _plan(sample_rate, n_fft, win_length, n_mels, f_min, f_max, bands_per_block)
        self.register_buffer("window", window, persistent=False)
        self.register_buffer("block_weights", weights, persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Waveform [B, N] (float32) -> mel power [B, n_mels, frames]."""
        if wave.dim() != 2:
            raise ValueError(f"FastMelSpectrogram expects a waveform [B, N]; got shape {tuple(wave.shape)}.")
        wave = wave.float()
        pad = self.n_fft // 2
        if wave.shape[1] <= pad:
            raise ValueError(f"Clips of {wave.shape[1]} samples are too short for n_fft={self.n_fft} with reflect padding; "
                             f"need more than {pad} samples.")
        frames = wave.shape[1] // self.hop_length + 1
        parts = map_chunks(lambda chunk: self._mel(chunk, pad, frames), wave.split(self.chunk_clips))
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    def _mel(self, chunk: torch.Tensor, pad: int, frames: int) -> torch.Tensor:
        """Mel power [n, n_mels, frames] of a few clips [n, N]."""
        n = chunk.shape[0]
        padded = F.pad(chunk.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        cut = padded.unfold(-1, self.n_fft, self.hop_length) * self.window  # [n, frames, n_fft], contiguous
        spec = torch.view_as_real(torch.fft.rfft(cut))  # [n, frames, n_freqs, 2]
        power2 = spec.square_().view(n * frames, -1)  # squared re, im interleaved: [n * frames, 2 * n_freqs]
        mel_t = chunk.new_zeros(self.n_mels, n * frames)  # [mels, clips x frames]: each block writes whole rows
        offset = 0
        for a, b, k0, k1 in self.blocks:
            w = self.block_weights[offset : offset + (b - a) * (k1 - k0)].view(b - a, k1 - k0)
            offset += w.numel()
            torch.mm(w, power2[:, k0:k1].t(), out=mel_t[a:b])
        return mel_t.view(self.n_mels, n, frames).transpose(0, 1).contiguous()


class FastLogMelFrontend(LogMelFrontend):
    """`LogMelFrontend` whose mel power comes from `FastMelSpectrogram` for CPU inputs without gradient (else torchaudio)."""

    def __init__(self, config: FrontendConfig | None = None) -> None:
        super().__init__(config)
        c = self.config
        self.fast_mel = FastMelSpectrogram(c.sample_rate, c.n_fft, c.win_length, c.hop_length, c.n_mels, c.f_min, c.f_max)

    def mel_power(self, wave: torch.Tensor) -> torch.Tensor:
        """Mel power [B, n_mels, frames]; the fast path computes in place, so inputs that need a gradient use torchaudio."""
        if wave.device.type == "cpu" and not wave.requires_grad:
            return self.fast_mel(wave)
        return self.mel(wave)


def fast_frontend(frontend: LogMelFrontend | FrontendConfig | None = None) -> FastLogMelFrontend:
    """A fast front end with the same settings (and train/eval mode) as `frontend` (or a FrontendConfig; None = defaults)."""
    if isinstance(frontend, FastLogMelFrontend):
        return frontend
    if isinstance(frontend, LogMelFrontend):
        fast = FastLogMelFrontend(frontend.config).train(frontend.training)
        device = next(frontend.buffers()).device
        return fast.to(device)
    return FastLogMelFrontend(frontend)
