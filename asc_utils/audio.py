"""Reading and writing wav files with soundfile (torchaudio >= 2.9 needs TorchCodec/FFmpeg for file I/O, soundfile does not)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

from asc_utils.errors import UserError

if TYPE_CHECKING:  # torch is imported where it is used, so numpy-only users (the data generator) do not load it
    import torch

SAMPLE_RATE = 44_100  # Hz: TAU22, the embedded data set, the front end and the impulse responses all use this rate
CLIP_SAMPLES = SAMPLE_RATE  # one clip is 1 s


class AudioReadError(UserError, RuntimeError):
    """A wav file could not be decoded."""


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read a wav file as float32 [channels, samples] in [-1, 1] and its sample rate; raise AudioReadError naming the file."""
    path = Path(path)
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types (LibsndfileError, RuntimeError, OSError)
        raise AudioReadError(
            f"Could not read audio file '{path}': {exc}. Expected a readable wav file; "
            "check that it exists and is not truncated (re-extract or re-generate it)."
        ) from exc
    return np.ascontiguousarray(data.T), int(sr)


def to_mono(wave: np.ndarray) -> np.ndarray:
    """Average the channels of a [channels, samples] array into [samples]."""
    return wave.mean(axis=0) if wave.shape[0] > 1 else wave[0]


def resample(wave: torch.Tensor, orig_sr: int, new_sr: int = SAMPLE_RATE) -> torch.Tensor:
    """Resample a waveform tensor (last dim = time) with torchaudio."""
    import torchaudio.functional as AF

    if orig_sr == new_sr:
        return wave
    return AF.resample(wave, orig_sr, new_sr)


def fix_length(wave: torch.Tensor, n: int = CLIP_SAMPLES) -> torch.Tensor:
    """Crop or zero-pad the last dimension of a waveform to exactly n samples."""
    import torch.nn.functional as F

    length = wave.shape[-1]
    if length > n:
        return wave[..., :n]
    if length < n:
        return F.pad(wave, (0, n - length))
    return wave


def write_wav(path: str | os.PathLike, wave: np.ndarray | torch.Tensor, sr: int = SAMPLE_RATE, subtype: str = "PCM_24") -> None:
    """Write a mono [samples] or [1, samples] float waveform atomically (temporary file, then rename)."""
    path = Path(path)
    if hasattr(wave, "detach"):  # a torch tensor (without importing torch for numpy input)
        wave = wave.detach().cpu().numpy()
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        sf.write(tmp, np.clip(wave, -1.0, 1.0), sr, subtype=subtype, format="WAV")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
