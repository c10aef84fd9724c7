"""The family of microphone-like responses, shared by the embedded data set's devices and the generated DIRs (numpy only).

`mic_like_magnitude_db` draws a smooth magnitude response: a high-pass and a low-pass corner, a spectral tilt, a few
resonant peaks and notches and a gentle ripple; `strength` scales how far it is from flat (0 = flat).
`mic_like_response` turns one such draw into a short minimum-phase impulse response with unit energy.

Two users draw instances from this family, each from its own seed stream, so that no response is ever drawn twice:
- the devices of the embedded data set (`asc_utils.synth.devices`): seeds [DEVICE_FAMILY_SEED, k];
- the generated device impulse responses for augmentation (`asc_utils.dirs.generated_dirs`): seeds [GENERATED_DIR_STREAM, seed].
"""

from __future__ import annotations

import numpy as np

from asc_utils.audio import SAMPLE_RATE

DEVICE_FAMILY_SEED = 20_220_601  # seeds [DEVICE_FAMILY_SEED, k] belong to the embedded data set's devices, nothing else
GENERATED_DIR_STREAM = 0xD12  # seeds [GENERATED_DIR_STREAM, seed] belong to the generated DIRs
IR_TAPS = 2048  # length of a drawn impulse response (46 ms at 44.1 kHz)
DESIGN_FFT = 16_384  # frequency grid on which magnitudes are drawn and made minimum-phase


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


def minimum_phase_ir(mag_db: np.ndarray, taps: int, n_fft: int = DESIGN_FFT) -> np.ndarray:
    """Minimum-phase impulse response (float64 [taps]) with the given magnitude (dB on an rfft grid of size n_fft).

    Computed with the folded real cepstrum; the last quarter of the taps is faded out with a half cosine.
    """
    log_mag = np.log(10.0 ** (mag_db / 20.0) + 1e-9)
    cep = np.fft.irfft(log_mag, n_fft)
    fold = np.zeros(n_fft)
    fold[0] = cep[0]
    fold[1 : n_fft // 2] = 2.0 * cep[1 : n_fft // 2]
    fold[n_fft // 2] = cep[n_fft // 2]
    ir = np.fft.irfft(np.exp(np.fft.rfft(fold)), n_fft)[:taps]
    fade = taps // 4
    ir[-fade:] *= 0.5 * (1.0 + np.cos(np.linspace(0.0, np.pi, fade)))
    return ir


def mic_like_response(rng: np.random.Generator, strength: float = 1.0, taps: int = IR_TAPS) -> np.ndarray:
    """Draw one impulse response (float32 [taps], unit energy, 44.1 kHz) from the family of microphone-like responses."""
    freqs = np.fft.rfftfreq(DESIGN_FFT, 1.0 / SAMPLE_RATE)
    ir = minimum_phase_ir(mic_like_magnitude_db(rng, freqs, strength), taps)
    return (ir / np.sqrt(np.sum(ir**2))).astype(np.float32)
