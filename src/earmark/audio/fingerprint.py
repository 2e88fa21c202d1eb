"""Audio fingerprints that find the same recording again after gain changes, small shifts and re-encoding.

The scheme follows Haitsma & Kalker (2002, "A highly robust audio fingerprinting system"), made coarse
enough to survive lossy codecs and shifts that are not a whole number of frames:

1. the audio is resampled to 8 kHz and cut into 32 ms frames every 8 ms (``N_FFT``, ``HOP``);
2. the power spectrum is summed into 33 logarithmically spaced bands between 300 and 3500 Hz, and each
   band's energy over a sliding window of frames;
3. frame ``n`` gets 32 bits: bit ``m`` is 1 when ``d[n, m] - d[n - lag, m] > 0``, where
   ``d[n, m] = log E[n, m] - log E[n, m + 1]`` is the slope between neighbouring bands. Signs of
   differences of log energies do not change with gain. Two sets of bits are kept: *coarse* ones
   (energy over 12 frames, ~120 ms, compared with 48 ms earlier), which barely change when the audio
   shifts by part of a hop and serve to align two files, and *fine* ones (4 frames, 16 ms apart), which
   tell a copy of a recording from another take of the same sound (the same word said twice by one
   speaker gives coarse bits almost as alike as a copy's);
4. frames more than ``FLOOR_DB`` below the loudest frame (silence, fades) are marked invalid: their bits
   are noise, and two files would look alike just by both being silent there.

Two fingerprints are compared at the offset that aligns them best (the envelope cross-correlation's
peaks, refined by the coarse bits) by the bit error rate (BER, the share of differing bits) of their fine
bits over the frames valid in both. Unrelated recordings give a BER near 0.5; the most alike different
takes of one spoken digit by one speaker (FSDD) 0.23 and up; ESC-10 clips re-encoded as 32 kbit/s MP3
at 22.05 kHz with 6 dB less gain and shifted by up to 1.25 s 0.09-0.21. :data:`NEAR_DUPLICATE_BER`
lies between. Files with fewer than ``MIN_COMMON_FRAMES`` frames of sound (~0.13 s) are too short to
tell a copy from another take; only exact duplicates are found among them.

A compact ``summary`` (gain-normalised mean and spread of each band's log energy) ranks candidate pairs,
so a collection of N files needs a few comparisons per file, not N^2 / 2.

Shapes: a fingerprint of ``F`` frames has ``coarse``, ``fine`` ``(F,) uint32``, ``valid (F,) bool``,
``envelope (F,) float32``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.fft
import scipy.signal
import scipy.sparse
import soxr

#: Bumped whenever a setting below changes what a fingerprint holds (cached fingerprints are keyed by it).
FINGERPRINT_VERSION = 1
ANALYSIS_RATE = 8000
N_FFT = 256  # 32 ms
HOP = 64  # 8 ms
COARSE = (12, 6)  # (frames of energy summed, frames between the slopes a bit compares)
FINE = (4, 2)
N_BANDS = 33  # 32 slopes, one bit each
F_MIN, F_MAX = 300.0, 3500.0
FLOOR_DB = 50.0
#: Fine-bit error rate at or below which two aligned fingerprints are the same recording.
NEAR_DUPLICATE_BER = 0.21
#: Fewest frames (valid in both) a comparison needs: 16 frames, ~0.13 s; up to 24 when both files
#: have at least twice as many valid frames.
MIN_COMMON_FRAMES = 16
_PREFERRED_COMMON_FRAMES = 24
#: Frames lost at the start of a fingerprint (the widest window), so both bit sets line up.
_LEAD = max(i + lag for i, lag in (COARSE, FINE))

FRAME_SECONDS = HOP / ANALYSIS_RATE


@dataclass(frozen=True)
class Fingerprint:
    """``coarse``, ``fine (F,)`` uint32 bits, ``valid (F,)`` frames above the floor, ``envelope (F,)``
    float32 (change of log energy, for alignment), ``summary (2 * N_BANDS,)`` float32 (to rank
    candidates)."""

    coarse: np.ndarray
    fine: np.ndarray
    valid: np.ndarray
    envelope: np.ndarray
    summary: np.ndarray

    @cached_property
    def n_valid(self) -> int:
        return int(self.valid.sum())

    def __len__(self) -> int:
        return int(self.valid.size)


@dataclass(frozen=True)
class Match:
    """The best alignment of fingerprint ``b`` on ``a`` (``b``'s frame ``k`` at ``a``'s ``k + offset``)."""

    ber: float  # fine bits
    coarse_ber: float
    offset: int
    common: int  # frames valid in both at that offset

    @property
    def offset_s(self) -> float:
        return self.offset * FRAME_SECONDS

    @property
    def is_duplicate(self) -> bool:
        return self.common > 0 and self.ber <= NEAR_DUPLICATE_BER


def _band_matrix() -> scipy.sparse.csr_matrix:
    """Triangular bands on log-spaced edges, ``(N_BANDS, N_FFT // 2 + 1)``, sparse (a dense product
    would go through a multi-threaded BLAS, slow for such small matrices on a busy machine)."""
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / ANALYSIS_RATE)
    edges = np.geomspace(F_MIN, F_MAX, N_BANDS + 2)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    bank = np.maximum(0.0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))
    return scipy.sparse.csr_matrix(bank.astype(np.float32))


_BANDS = _band_matrix()
_WINDOW = np.hanning(N_FFT).astype(np.float32)


def _bits(window_sums: np.ndarray, width: int, lag: int, n: int) -> np.ndarray:
    """Packed bits ``(n,)`` of the last ``n`` frames from cumulative band energies ``(frames + 1, bands)``."""
    log_e = np.log(window_sums[width:] - window_sums[:-width] + 1e-10)
    slope = log_e[:, :-1] - log_e[:, 1:]
    bits = (slope[lag:] - slope[:-lag]) > 0
    packed = np.ascontiguousarray(np.packbits(bits[-n:], axis=1, bitorder="little"))
    return packed.view("<u4")[:, 0].astype(np.uint32)


def fingerprint(wave: np.ndarray, sample_rate: int, max_seconds: float | None = None) -> Fingerprint:
    """The fingerprint of a mono waveform ``(samples,)``; only the first ``max_seconds`` when given."""
    x = np.asarray(wave, dtype=np.float32)
    if max_seconds is not None:
        x = x[: int(max_seconds * sample_rate)]
    if sample_rate != ANALYSIS_RATE and x.size:
        x = soxr.resample(x, sample_rate, ANALYSIS_RATE, quality="LQ")
    need = N_FFT + HOP * (_LEAD + 1)
    if x.size < need:
        x = np.pad(x, (0, need - x.size))
    n = 1 + (x.size - N_FFT) // HOP
    step = x.strides[0]
    frames = np.lib.stride_tricks.as_strided(x, (n, N_FFT), (step * HOP, step), writeable=False)
    spec = scipy.fft.rfft(frames * _WINDOW, axis=1)
    power = spec.real ** 2 + spec.imag ** 2
    bands = np.asarray((_BANDS @ power.T).T, dtype=np.float64)  # (n, N_BANDS)
    cum = np.concatenate([np.zeros((1, N_BANDS)), np.cumsum(bands, axis=0)])
    m = n + 1 - _LEAD  # frames with both bit sets
    width, lag = COARSE
    total = (cum[width:] - cum[:-width]).sum(axis=1)  # energy of each coarse window
    loud = total > max(total.max() * 10 ** (-FLOOR_DB / 10), 1e-10)
    valid = (loud[lag:] & loud[:-lag])[-m:]
    level = np.log(total[lag:] + 1e-10)[-m:]
    env = np.zeros(m, dtype=np.float32)  # how the level changes (onsets, decays); 0 where invalid
    env[1:] = np.where(valid[1:] & valid[:-1], np.diff(level), 0.0)
    log_bands = np.log(bands + 1e-10)
    used = log_bands[bands.sum(axis=1) > bands.sum(axis=1).max() * 10 ** (-FLOOR_DB / 10)]
    used = used if used.size else log_bands
    summary = np.concatenate([used.mean(axis=0) - used.mean(), used.std(axis=0)]).astype(np.float32)
    return Fingerprint(_bits(cum, *COARSE, m), _bits(cum, *FINE, m), valid, env, summary)


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _ber_at(a: Fingerprint, b: Fingerprint, offset: int, fine: bool = False) -> tuple[float, int]:
    """BER and common valid frames with ``b``'s frame ``k`` at ``a``'s ``k + offset``."""
    a0, b0 = max(offset, 0), max(-offset, 0)
    n = min(len(a) - a0, len(b) - b0)
    if n <= 0:
        return 1.0, 0
    mask = a.valid[a0: a0 + n] & b.valid[b0: b0 + n]
    common = int(mask.sum())
    if common == 0:
        return 1.0, 0
    bits_a, bits_b = (a.fine, b.fine) if fine else (a.coarse, b.coarse)
    diff = np.bitwise_xor(bits_a[a0: a0 + n][mask], bits_b[b0: b0 + n][mask])
    return float(_POPCOUNT[diff.view(np.uint8)].sum()) / (32 * common), common


def compare(a: Fingerprint, b: Fingerprint, candidates: int = 3) -> Match:
    """Align ``b`` on ``a`` and score it (:attr:`Match.is_duplicate` says whether it is a copy).

    The ``candidates`` highest peaks of the envelopes' cross-correlation (and offset 0), each +-1 frame,
    are scored by coarse BER; the fine BER is taken at the best of them +-1. Offsets where fewer than
    ``MIN_COMMON_FRAMES`` (up to 24 for longer files) frames are valid in both are not
    considered; with none left the BER is 1 (no evidence either way).
    """
    need = max(MIN_COMMON_FRAMES, min(_PREFERRED_COMMON_FRAMES, min(a.n_valid, b.n_valid) // 2))
    if min(a.n_valid, b.n_valid) < need:
        return Match(1.0, 1.0, 0, 0)
    if len(a) * len(b) <= 4_000_000:  # direct is faster than picking a method, for short files
        corr = np.correlate(a.envelope, b.envelope, mode="full")
    else:
        corr = scipy.signal.fftconvolve(a.envelope, b.envelope[::-1], mode="full")
    lags = np.arange(-(len(b) - 1), len(a))
    overlap = np.minimum(len(a), lags + len(b)) - np.maximum(0, lags)
    corr = np.where(overlap >= need, corr, -np.inf)
    top = lags[np.argsort(corr)[::-1][:candidates]].tolist()
    coarse, offset = 1.0, 0
    for o in sorted({o + d for o in (*top, 0) for d in (-1, 0, 1)}):
        ber, common = _ber_at(a, b, o)
        if common >= need and ber < coarse:
            coarse, offset = ber, o
    if coarse >= 1.0:
        return Match(1.0, 1.0, 0, 0)
    best = Match(1.0, coarse, offset, 0)
    for o in (offset - 1, offset, offset + 1):
        ber, common = _ber_at(a, b, o, fine=True)
        if common >= need and ber < best.ber:
            best = Match(ber, coarse, o, common)
    return best
