"""The log-mel front end, shared by training and inference through one configuration object."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torchaudio
from torch import nn

from asc_utils.augment import FrequencyMask


@dataclass(frozen=True)
class FrontendConfig:
    """Log-mel settings of the SNTL-NTU inference package (the published training script used n_fft=8912, f_min=1: a quirk)."""

    sample_rate: int = 44_100
    n_fft: int = 8192
    win_length: int = 8192
    hop_length: int = 1364
    n_mels: int = 256
    f_min: float = 0.0
    f_max: float | None = None
    log_offset: float = 1e-5
    freq_mask: int = 48  # FrequencyMasking(freq_mask_param), applied in train() mode only

    def to_dict(self) -> dict:
        """The settings as a plain dict (saved with every run)."""
        return asdict(self)


class LogMelFrontend(nn.Module):
    """Waveform [B, N] or [B, 1, N] -> log-mel [B, 1, n_mels, frames]; frequency masking only in train() mode."""

    def __init__(self, config: FrontendConfig | None = None) -> None:
        super().__init__()
        self.config = config or FrontendConfig()
        c = self.config
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=c.sample_rate,
            n_fft=c.n_fft,
            win_length=c.win_length,
            hop_length=c.hop_length,
            n_mels=c.n_mels,
            f_min=c.f_min,
            f_max=c.f_max,
        )
        # same rule as torchaudio's FrequencyMasking(iid_masks=True); also accepts a torch.Generator when called directly
        self.freq_mask = FrequencyMask(c.freq_mask) if c.freq_mask else None

    def mel_power(self, wave: torch.Tensor) -> torch.Tensor:
        """Mel power spectrogram [B, n_mels, frames] of float32 waveforms [B, N] (power 2, before the log)."""
        return self.mel(wave)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Waveform [B, N] or [B, 1, N] -> log-mel [B, 1, n_mels, frames]."""
        if wave.dim() == 3:
            if wave.shape[1] != 1:
                raise ValueError(f"LogMelFrontend expects mono audio [B, 1, N]; got shape {tuple(wave.shape)}.")
            wave = wave[:, 0]
        if wave.dim() != 2:
            raise ValueError(f"LogMelFrontend expects a waveform [B, N] or [B, 1, N]; got shape {tuple(wave.shape)}.")
        mel = self.mel_power(wave.float()).unsqueeze(1)  # [B, 1, n_mels, frames]
        if self.training and self.freq_mask is not None:
            mel = self.freq_mask(mel)
        return torch.log(mel + self.config.log_offset)
