"""Procedural sound sources for the embedded data set: shaped noise, tones and short events (numpy, float64, 44.1 kHz)."""

from __future__ import annotations

import numpy as np

from asc_utils.audio import SAMPLE_RATE


def _freqs(n: int) -> np.ndarray:
    """The rfft bin frequencies (Hz) of an n-point FFT, floored at 1 Hz so that shape functions may divide by them."""
    return np.maximum(np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE), 1.0)


def fast_len(n: int) -> int:
    """The smallest 2^a * 3^b * 5^c >= n (FFT sizes with large prime factors are very slow)."""
    best, p5 = 2 * n, 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            size = p35
            while size < n:
                size *= 2
            best = min(best, size)
            p35 *= 3
        p5 *= 5
    return best


def band(f: np.ndarray, lo: float, hi: float, order: float = 2.0) -> np.ndarray:
    """Amplitude response of a smooth band-pass between lo and hi Hz."""
    return 1.0 / np.sqrt((1.0 + (lo / f) ** (2 * order)) * (1.0 + (f / hi) ** (2 * order)))


def tilt(f: np.ndarray, db_per_octave: float, ref: float = 1000.0) -> np.ndarray:
    """Amplitude of a spectral tilt in dB per octave around ref Hz."""
    return 10.0 ** (db_per_octave * np.log2(f / ref) / 20.0)


def bump(f: np.ndarray, fc: float, gain_db: float, width_oct: float) -> np.ndarray:
    """Amplitude of a Gaussian bump (in log-frequency) of gain_db at fc."""
    return 10.0 ** (gain_db * np.exp(-0.5 * (np.log2(f / fc) / (width_oct / 2.0)) ** 2) / 20.0)


def unit_rms(x: np.ndarray) -> np.ndarray:
    """Scale a signal to RMS 1 (silence stays silence)."""
    rms = np.sqrt(np.mean(x**2))
    return x / rms if rms > 0 else x


def shaped_noise(rng: np.random.Generator, n: int, shape) -> np.ndarray:
    """Unit-RMS Gaussian noise whose amplitude spectrum is shape(freqs)."""
    size = fast_len(n)
    f = _freqs(size)
    spec = (rng.standard_normal(len(f)) + 1j * rng.standard_normal(len(f))) * shape(f)
    return unit_rms(np.fft.irfft(spec, size)[:n])


def filter_fft(x: np.ndarray, shape) -> np.ndarray:
    """Zero-phase filtering of x with the amplitude response shape(freqs)."""
    size = fast_len(len(x))
    return np.fft.irfft(np.fft.rfft(x, size) * shape(_freqs(size)), size)[: len(x)]


def envelope(rng: np.random.Generator, n: int, rate_hz: float, depth_db: float) -> np.ndarray:
    """A slowly varying random gain (linear), knots every 1/rate_hz seconds, std depth_db."""
    knots = max(2, int(np.ceil(n / SAMPLE_RATE * rate_hz)) + 2)
    xs = np.linspace(0, n, knots)
    return 10.0 ** (np.interp(np.arange(n), xs, rng.normal(0.0, depth_db, knots)) / 20.0)


def tones(f0: np.ndarray | float, amps: list[float], n: int, rng: np.random.Generator) -> np.ndarray:
    """Harmonic tone with fundamental f0 (Hz, scalar or per-sample track) and one amplitude per harmonic."""
    track = np.broadcast_to(np.asarray(f0, dtype=np.float64), (n,))
    cycles = (np.cumsum(track) / SAMPLE_RATE % 1.0).astype(np.float32)  # wrapped in float64, then float32 for fast sines
    out = np.zeros(n, dtype=np.float32)
    for k, a in enumerate(amps, 1):
        if a:
            out += np.float32(a) * np.sin(np.float32(2 * np.pi) * ((k * cycles + np.float32(rng.random())) % np.float32(1.0)))
    return out.astype(np.float64)


def add_at(buffer: np.ndarray, event: np.ndarray, start: int) -> None:
    """Add an event into buffer at sample start (events that run past the end are cut)."""
    if start >= len(buffer) or start + len(event) <= 0:
        return
    a, b = max(start, 0), min(start + len(event), len(buffer))
    buffer[a:b] += event[a - start : b - start]


def event_times(rng: np.random.Generator, n: int, rate_per_10s: float, margin: int = 0) -> np.ndarray:
    """Poisson event onsets (samples) for an average rate per 10 s."""
    count = rng.poisson(rate_per_10s * n / (10.0 * SAMPLE_RATE))
    return np.sort(rng.integers(-margin, n, count)) if count else np.zeros(0, dtype=np.int64)


def decaying_burst(rng: np.random.Generator, dur: float, lo: float, hi: float, decay: float) -> np.ndarray:
    """A noise burst band-limited to [lo, hi] Hz with exponential decay (s): clicks, thumps, clacks."""
    n = max(16, int(dur * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    x = rng.standard_normal(n) * np.exp(-t / decay)
    return unit_rms(filter_fft(x, lambda f: band(f, lo, hi, 2.0))) * np.exp(-t / decay)


def footstep(rng: np.random.Generator, hardness: float) -> np.ndarray:
    """A footstep: a low thump plus a scuff whose brightness grows with hardness (0..1)."""
    thump = decaying_burst(rng, 0.08, 60.0, 400.0, 0.012)
    scuff = decaying_burst(rng, 0.08, 800.0, 2000.0 + 6000.0 * hardness, 0.01 + 0.02 * rng.random())
    return thump + (0.3 + hardness) * 0.6 * scuff


def chirp_sequence(rng: np.random.Generator, f_lo: float, f_hi: float) -> np.ndarray:
    """A bird-like phrase: 2-8 short frequency sweeps between f_lo and f_hi Hz."""
    parts = []
    for _ in range(rng.integers(2, 9)):
        dur = rng.uniform(0.04, 0.2)
        n = int(dur * SAMPLE_RATE)
        start, end = rng.uniform(f_lo, f_hi, 2)
        track = np.linspace(start, end, n) + rng.uniform(0, 400) * np.sin(2 * np.pi * rng.uniform(15, 60) * np.arange(n) / SAMPLE_RATE)
        tone = tones(track, [1.0, 0.15], n, rng) * np.hanning(n)
        parts += [tone, np.zeros(int(rng.uniform(0.02, 0.15) * SAMPLE_RATE))]
    return np.concatenate(parts)


def chime(rng: np.random.Generator, notes: list[float], note_dur: float) -> np.ndarray:
    """An announcement chime: a sequence of bell-like notes (partials 1, 2, 3) with exponential decay."""
    parts = []
    for f in notes:
        n = int(note_dur * 2.5 * SAMPLE_RATE)
        t = np.arange(n) / SAMPLE_RATE
        partials = tones(f, [1.0, 0.35, 0.15], n, rng) * np.exp(-t / (note_dur * 0.9))
        parts.append((int(len(parts) * note_dur * SAMPLE_RATE), partials))
    out = np.zeros(parts[-1][0] + len(parts[-1][1]))
    for start, x in parts:
        add_at(out, x, start)
    return out


def beep(rng: np.random.Generator, freq: float, dur: float, repeats: int, gap: float) -> np.ndarray:
    """Electronic beeps (near-square tone, 5 ms ramps): door warnings, checkout scanners, stop requests."""
    n = int(dur * SAMPLE_RATE)
    ramp = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.005 * SAMPLE_RATE))
    one = tones(freq, [1.0, 0.0, 0.3, 0.0, 0.15], n, rng) * ramp
    out = np.zeros(int((dur + gap) * SAMPLE_RATE) * repeats)
    for i in range(repeats):
        add_at(out, one, int(i * (dur + gap) * SAMPLE_RATE))
    return out


def vehicle_pass(rng: np.random.Generator, dur: float, brightness: float, engine_f0: float) -> np.ndarray:
    """A vehicle passing by: tyre/engine noise with a bell-shaped envelope and a Doppler-shifted engine tone."""
    n = int(dur * SAMPLE_RATE)
    t = np.linspace(-1.0, 1.0, n)
    env = 1.0 / (1.0 + (t * rng.uniform(2.0, 4.0)) ** 2)
    noise = shaped_noise(rng, n, lambda f: band(f, 40.0, 700.0 + 3500.0 * brightness, 1.5) * tilt(f, -3.0))
    doppler = engine_f0 * (1.0 + 0.06 * np.tanh(-3.0 * t))
    engine = tones(doppler, [1.0, 0.6, 0.4, 0.2], n, rng)
    return (noise + 0.5 * engine * rng.uniform(0.3, 1.0)) * env


def talker_excitation(rng: np.random.Generator, dur: float, f0: float) -> tuple[np.ndarray, np.ndarray]:
    """A talker before the vocal tract: syllable-gated glottal-like pulses (with intonation) and gated fricative noise."""
    n = int(dur * SAMPLE_RATE)
    syll = envelope(rng, n, rng.uniform(3.5, 6.0), 14.0)
    syll = np.where(syll > 1.0, np.minimum(syll, 4.0), syll**3)  # gaps between syllables
    phase = np.cumsum(f0 * envelope(rng, n, 2.0, 1.5)) / SAMPLE_RATE
    pulses = ((phase % 1.0) - 0.5 + 0.1 * rng.standard_normal(n)) * syll
    fric = rng.standard_normal(n) * syll * (envelope(rng, n, 6.0, 10.0) > 1.6)
    return pulses, fric


def vocal_tract(x: np.ndarray, formants: tuple[float, float, float]) -> np.ndarray:
    """Shape glottal pulses with three formants (applied once per voice to all of its speech)."""
    return filter_fft(x, lambda f: sum(bump(f, fm, 18.0 - 4 * i, 0.35) for i, fm in enumerate(formants)) * band(f, 90.0, 4000.0, 1.0))


def fricatives(x: np.ndarray) -> np.ndarray:
    """Shape gated noise into fricatives (2.5-7 kHz)."""
    return filter_fft(x, lambda f: band(f, 2500.0, 7000.0, 2.0))


def music(rng: np.random.Generator, n: int, root: float, tempo: float) -> np.ndarray:
    """Background music from ceiling speakers: a chord progression of harmonic tones with a soft beat."""
    out = np.zeros(n)
    beat = 60.0 / tempo
    chord_len = int(4 * beat * SAMPLE_RATE)
    progressions = ([0, 5, 7, 3], [0, 9, 5, 7], [0, 7, 9, 5])
    prog = progressions[rng.integers(len(progressions))]
    for i, start in enumerate(range(0, n, chord_len)):
        m = min(chord_len, n - start)
        base = root * 2.0 ** (prog[i % 4] / 12.0)
        seg = sum(tones(base * 2.0 ** (s / 12.0), [1.0, 0.4, 0.2], m, rng) for s in (0, 4, 7))
        seg *= np.minimum(1.0, np.arange(m) / (0.05 * SAMPLE_RATE))
        out[start : start + m] += seg
    kick = decaying_burst(rng, 0.15, 40.0, 150.0, 0.05)
    for start in range(0, n, int(beat * SAMPLE_RATE)):
        add_at(out, 1.5 * kick, start)
    return filter_fft(out, lambda f: band(f, 150.0, 6000.0, 2.0))


def reverb_ir(rng: np.random.Generator, rt60: float, brightness: float) -> np.ndarray:
    """A diffuse room response: exponentially decaying noise (RT60 in s) whose high frequencies decay faster."""
    n = int(min(rt60 * 1.2, 3.0) * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    low = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    high = filter_fft(rng.standard_normal(n), lambda f: band(f, 2000.0, 20000.0, 1.0)) * np.exp(-6.9 * t / (rt60 * 0.45))
    ir = filter_fft(low, lambda f: band(f, 20.0, 2500.0, 1.0)) + brightness * high
    return ir / np.sqrt(np.sum(ir**2))
