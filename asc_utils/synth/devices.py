"""Recording devices of the embedded data set: each one fixed instance of the microphone-like family, plus gain, noise.

Every device's response is drawn from `asc_utils.responses` (the family of microphone-like responses) with the seed
[DEVICE_FAMILY_SEED, k] reserved for it; the generated DIRs of `asc_utils.dirs` draw from the same family with seeds of
their own, so no device response is ever reused as an augmentation response (`device_response` lets tests check that).
On top of its response a device has a gain, a noise floor and mild compression (`render_devices`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from asc_utils.audio import SAMPLE_RATE
from asc_utils.responses import DEVICE_FAMILY_SEED, IR_TAPS, mic_like_response
from asc_utils.synth.sources import fast_len


@dataclass(frozen=True)
class DeviceSpec:
    """How one device renders a scene: its response strength, gain, noise floor, compression and origin."""

    name: str
    index: int  # instance index k: the response is drawn with seed [DEVICE_FAMILY_SEED, k]
    strength: float  # how far the response is from flat (0 = flat)
    gain_db: float
    noise_dbfs: float  # RMS of the device's own noise floor
    noise_tilt: float  # dB per octave of that noise
    comp_threshold_dbfs: float  # compression above this short-term level (0 = off)
    comp_ratio: float
    simulated: bool  # True: rendered from device a's output (like TAU's s1..s6); False: records the scene itself


DEVICE_SPECS: dict[str, DeviceSpec] = {
    spec.name: spec
    for spec in (
        DeviceSpec("a", 0, 0.12, 0.0, -84.0, 0.0, 0.0, 1.0, False),  # reference binaural microphone: near-flat
        DeviceSpec("b", 1, 0.9, 3.0, -66.0, -3.0, -24.0, 2.0, False),  # phone-like: band-limited, AGC-like compression
        DeviceSpec("c", 2, 0.85, -2.5, -63.0, 1.5, -26.0, 1.5, False),
        DeviceSpec("s1", 3, 0.8, 1.5, -74.0, -1.0, 0.0, 1.0, True),
        DeviceSpec("s2", 4, 0.85, -2.0, -72.0, 0.0, -26.0, 1.5, True),
        DeviceSpec("s3", 5, 0.9, 0.5, -76.0, 2.0, 0.0, 1.0, True),
        DeviceSpec("s4", 6, 1.25, -1.0, -72.0, -2.0, -28.0, 1.6, True),  # s4..s6: unseen in training, and further from flat
        DeviceSpec("s5", 7, 1.3, 2.0, -74.0, 1.0, 0.0, 1.0, True),
        DeviceSpec("s6", 8, 1.2, -2.0, -70.0, 0.0, -25.0, 1.8, True),
    )
}


@lru_cache(maxsize=None)
def device_response(name: str) -> np.ndarray:
    """The fixed impulse response (float32 [IR_TAPS]) of one device of the embedded data set."""
    spec = DEVICE_SPECS[name]
    rng = np.random.default_rng([DEVICE_FAMILY_SEED, spec.index])
    return mic_like_response(rng, spec.strength)


@lru_cache(maxsize=64)
def _response_spectrum(name: str, size: int) -> np.ndarray:
    """A device's response with its gain, as an rfft of the given size."""
    return np.fft.rfft(device_response(name).astype(np.float64), size) * 10.0 ** (DEVICE_SPECS[name].gain_db / 20.0)


@lru_cache(maxsize=64)
def _noise_shape(size: int, tilt: float) -> np.ndarray:
    """Amplitude per rfft bin of a noise tilted by `tilt` dB per octave around 1 kHz, scaled to unit RMS after irfft(size)."""
    f = np.maximum(np.fft.rfftfreq(size, 1.0 / SAMPLE_RATE), 20.0)
    shape = 10.0 ** (tilt * np.log2(f / 1000.0) / 20.0)
    return shape * np.sqrt(size / 2.0) / np.sqrt(np.mean(shape**2))


def _noise_spectrum(rng: np.random.Generator, size: int, tilt: float) -> np.ndarray:
    """rfft-domain noise that becomes unit-RMS noise with a spectral tilt (dB per octave around 1 kHz) after irfft(size)."""
    bins = size // 2 + 1
    return (rng.standard_normal(bins, dtype=np.float32) + 1j * rng.standard_normal(bins, dtype=np.float32)) * _noise_shape(size, tilt)


def _compress(x: np.ndarray, threshold_dbfs: float, ratio: float) -> np.ndarray:
    """Feed-forward compressor: gain from the RMS of 10 ms blocks, interpolated between block centres."""
    block = SAMPLE_RATE // 100
    m = len(x) // block
    level = 10.0 * np.log10(np.mean(x[: m * block].reshape(m, block) ** 2, axis=1) + 1e-12)
    gain_db = -np.maximum(level - threshold_dbfs, 0.0) * (1.0 - 1.0 / ratio)
    centres = (np.arange(m) + 0.5) * block
    return x * 10.0 ** (np.interp(np.arange(len(x)), centres, gain_db) / 20.0)


def render_devices(scene: np.ndarray, devices: tuple[str, ...], rngs: dict[str, np.random.Generator]) -> dict[str, np.ndarray]:
    """Render one scene through several devices (each: response, gain, own noise, compression, soft saturation).

    Real devices (a, b, c) record the scene itself; simulated devices (s1..s6) start from device a's rendering,
    as TAU's simulated devices were made from device a's recordings.
    """
    n = len(scene)
    size = fast_len(n + IR_TAPS - 1)
    scene_spec = np.fft.rfft(scene, size)
    out: dict[str, np.ndarray] = {}
    reference_spec = None
    for name in ("a",) + tuple(d for d in devices if d != "a"):
        spec = DEVICE_SPECS[name]
        if spec.simulated and reference_spec is None:
            reference_spec = np.fft.rfft(out["a"], size)
        source = reference_spec if spec.simulated else scene_spec
        spectrum = source * _response_spectrum(name, size)
        spectrum += 10.0 ** (spec.noise_dbfs / 20.0) * _noise_spectrum(rngs[name], size, spec.noise_tilt)
        y = np.fft.irfft(spectrum, size)[:n]
        if spec.comp_threshold_dbfs < 0.0 and spec.comp_ratio > 1.0:
            y = _compress(y, spec.comp_threshold_dbfs, spec.comp_ratio)
        out[name] = np.tanh(y)  # soft saturation instead of hard clipping on rare loud peaks
    return {d: out[d] for d in devices}
