"""Recording devices of the embedded data set, built from one documented family of microphone-like responses.

The family (`mic_like_response`) draws a smooth magnitude response — a high-pass and a low-pass corner, a spectral tilt,
a few resonant peaks and notches and a gentle ripple — and turns it into a short minimum-phase impulse response.
Each device of the embedded data set is one fixed instance of the family (seeded with `DEVICE_FAMILY_SEED`), plus gain,
a noise floor and mild compression. `asc_utils.augment` draws its own instances from the same family with other seeds,
so no device response is ever reused as an augmentation response (`device_response` lets tests check that).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

SR = 44_100
DEVICE_FAMILY_SEED = 20_220_601  # seeds [DEVICE_FAMILY_SEED, k] are reserved for the devices below; use any other seed elsewhere
IR_TAPS = 2048
_FFT = 16_384


def _smooth_curve_db(rng: np.random.Generator, logf: np.ndarray, knots: int, std_db: float) -> np.ndarray:
    """A smooth random curve in dB over log-frequency (linear interpolation between random knots)."""
    xs = np.linspace(logf[0], logf[-1], knots)
    return np.interp(logf, xs, rng.normal(0.0, std_db, knots))


def mic_like_magnitude_db(rng: np.random.Generator, freqs: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Draw one magnitude response (dB, 0 dB = unchanged) of the microphone-like family on the given frequencies (Hz)."""
    f = np.maximum(freqs, 1.0)
    logf = np.log2(f)
    s = float(strength)
    lo = 20.0 * (rng.uniform(50.0, 300.0) / 20.0) ** min(s, 1.5)  # high-pass corner: 20 Hz (flat) .. 50-300 Hz (small capsule)
    hi = 20_000.0 * (rng.uniform(6_000.0, 16_000.0) / 20_000.0) ** min(s, 1.5)  # low-pass corner
    order_lo, order_hi = rng.uniform(1.0, 2.5), rng.uniform(1.5, 4.0)
    db = -10.0 * np.log10(1.0 + (lo / f) ** (2 * order_lo)) - 10.0 * np.log10(1.0 + (f / hi) ** (2 * order_hi))
    db += s * rng.normal(0.0, 1.5) * (logf - np.log2(1000.0))  # tilt, dB per octave around 1 kHz
    for _ in range(rng.integers(2, 5)):  # resonances (capsule, housing) and notches (reflections)
        fc = 2.0 ** rng.uniform(np.log2(150.0), np.log2(12_000.0))
        gain = s * rng.normal(0.0, 5.0)
        bw_oct = rng.uniform(0.2, 1.2)
        db += gain * np.exp(-0.5 * ((logf - np.log2(fc)) / (bw_oct / 2.0)) ** 2)
    db += s * _smooth_curve_db(rng, logf, 12, 1.5)
    return db


def _minimum_phase_ir(mag_db: np.ndarray, taps: int) -> np.ndarray:
    """Minimum-phase impulse response with the given magnitude (dB on an rfft grid of size _FFT), faded out to `taps`."""
    log_mag = np.log(10.0 ** (mag_db / 20.0) + 1e-9)
    cep = np.fft.irfft(log_mag, _FFT)
    fold = np.zeros(_FFT)
    fold[0] = cep[0]
    fold[1 : _FFT // 2] = 2.0 * cep[1 : _FFT // 2]
    fold[_FFT // 2] = cep[_FFT // 2]
    ir = np.fft.irfft(np.exp(np.fft.rfft(fold)), _FFT)[:taps]
    fade = taps // 4
    ir[-fade:] *= 0.5 * (1.0 + np.cos(np.linspace(0.0, np.pi, fade)))
    return ir


def mic_like_response(rng: np.random.Generator, strength: float = 1.0, taps: int = IR_TAPS) -> np.ndarray:
    """Draw one impulse response (float32 [taps], unit energy) from the family of microphone-like responses."""
    freqs = np.fft.rfftfreq(_FFT, 1.0 / SR)
    ir = _minimum_phase_ir(mic_like_magnitude_db(rng, freqs, strength), taps)
    return (ir / np.sqrt(np.sum(ir**2))).astype(np.float32)


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
    return np.fft.rfft(device_response(name).astype(np.float64), size) * 10.0 ** (DEVICE_SPECS[name].gain_db / 20.0)


@lru_cache(maxsize=64)
def _noise_shape(size: int, tilt: float) -> np.ndarray:
    f = np.maximum(np.fft.rfftfreq(size, 1.0 / SR), 20.0)
    shape = 10.0 ** (tilt * np.log2(f / 1000.0) / 20.0)
    return shape * np.sqrt(size / 2.0) / np.sqrt(np.mean(shape**2))


def _noise_spectrum(rng: np.random.Generator, size: int, tilt: float) -> np.ndarray:
    """rfft-domain noise that becomes unit-RMS noise with a spectral tilt (dB per octave around 1 kHz) after irfft(size)."""
    bins = size // 2 + 1
    return (rng.standard_normal(bins, dtype=np.float32) + 1j * rng.standard_normal(bins, dtype=np.float32)) * _noise_shape(size, tilt)


def _compress(x: np.ndarray, threshold_dbfs: float, ratio: float) -> np.ndarray:
    """Feed-forward compressor: gain from the RMS of 10 ms blocks, interpolated between block centres."""
    block = SR // 100
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
    from asc_utils.data.sources import fast_len

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
