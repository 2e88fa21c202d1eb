"""``earmark demo``: a small labeled dataset synthesized on the spot (no download), trained end to end.

Five classes of sounds that differ the way real classes do (pitch, movement, rhythm, texture):

- ``tone``:  a steady harmonic tone with vibrato, random pitch
- ``chirp``: rising frequency sweeps
- ``knock``: trains of short decaying percussive bursts
- ``hiss``:  band-limited noise (rain-like)
- ``beep``:  an alarm-like tone switching on and off

Each file has a random length, level and background noise; files are written as WAV, FLAC and OGG.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .audio.io import write_audio

CLASSES = ("tone", "chirp", "knock", "hiss", "beep")


def _tone(rng: np.random.Generator, t: np.ndarray, sr: int) -> np.ndarray:
    f0 = rng.uniform(150, 700)
    vib = 1 + 0.01 * np.sin(2 * np.pi * rng.uniform(4, 7) * t)
    phase = 2 * np.pi * np.cumsum(f0 * vib) / sr
    return np.sum([(0.6 ** k) * np.sin(k * phase) for k in range(1, 5)], axis=0)


def _chirp(rng: np.random.Generator, t: np.ndarray, sr: int) -> np.ndarray:
    period = rng.uniform(0.3, 0.8)
    lo, hi = rng.uniform(300, 900), rng.uniform(1500, 4000)
    frac = (t % period) / period
    freq = lo * (hi / lo) ** frac
    return np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.hanning(64).max()


def _knock(rng: np.random.Generator, t: np.ndarray, sr: int) -> np.ndarray:
    out = np.zeros_like(t)
    rate = rng.uniform(3, 8)
    decay = rng.uniform(30, 80)
    for onset in np.arange(rng.uniform(0, 0.1), t[-1], 1 / rate):
        i = int(onset * sr)
        n = min(len(t) - i, int(0.15 * sr))
        env = np.exp(-decay * np.arange(n) / sr)
        out[i: i + n] += env * rng.standard_normal(n) * 0.8
    return out


def _hiss(rng: np.random.Generator, t: np.ndarray, sr: int) -> np.ndarray:
    from scipy.signal import butter, sosfilt

    lo = rng.uniform(1500, 3000)
    sos = butter(4, [lo, min(lo * rng.uniform(1.5, 2.5), sr / 2 - 100)], btype="band", fs=sr, output="sos")
    return sosfilt(sos, rng.standard_normal(len(t))) * 3


def _beep(rng: np.random.Generator, t: np.ndarray, sr: int) -> np.ndarray:
    f = rng.uniform(800, 2000)
    rate = rng.uniform(2, 5)
    gate = (np.sin(2 * np.pi * rate * t) > 0).astype(np.float64)
    return np.sin(2 * np.pi * f * t) * gate


_MAKERS = {"tone": _tone, "chirp": _chirp, "knock": _knock, "hiss": _hiss, "beep": _beep}


def synth(label: str, duration_s: float, sr: int, rng: np.random.Generator, snr_db: float | None = None) -> np.ndarray:
    """One normalised example of ``label`` with background noise."""
    t = np.arange(int(duration_s * sr)) / sr
    x = _MAKERS[label](rng, t, sr)
    x = x / (np.abs(x).max() + 1e-9)
    snr = rng.uniform(10, 30) if snr_db is None else snr_db
    noise = rng.standard_normal(len(t)) * np.sqrt(np.mean(x ** 2)) / 10 ** (snr / 20)
    y = (x + noise) * rng.uniform(0.2, 0.9)
    return (y / max(1.0, np.abs(y).max() / 0.99)).astype(np.float32)


def make_demo_dataset(out: str | Path, per_class: int = 30, sample_rate: int = 16000, seed: int = 0) -> Path:
    """Write a class-per-folder dataset (``out/<class>/*.{wav,flac,ogg}``) and one long mixed file.

    Returns the dataset folder. The long file (``out/../demo-long.wav``: tone, knock, chirp, 4 s each)
    shows per-segment predictions.
    """
    out = Path(out)
    rng = np.random.default_rng(seed)
    formats = ("wav", "flac", "ogg")
    for label in CLASSES:
        (out / label).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            wave = synth(label, rng.uniform(1.0, 3.0), sample_rate, rng)
            write_audio(out / label / f"{label}_{k:03d}.{formats[k % 3]}", wave, sample_rate)
    long = np.concatenate([synth(lbl, 4.0, sample_rate, rng, snr_db=25) for lbl in ("tone", "knock", "chirp")])
    write_audio(out.parent / "demo-long.wav", long, sample_rate)
    return out
