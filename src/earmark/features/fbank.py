"""The project's log-mel filter bank, as composable, batched ``torch.nn.Module`` s.

The maths, step by step (defaults are those of the singer-gender system, 16 kHz):

1. pre-emphasis ``y[t] = x[t] - 0.97 x[t-1]`` (``y[0] = x[0]``);
2. framing into 25 ms frames (400 samples) every 10 ms (160 samples). The last frame is zero-padded, so
   a signal of ``S`` samples gives ``1 + ceil((S - 400) / 160)`` frames: 299 for 3 s;
3. a Hamming window (symmetric, as ``numpy.hamming``);
4. the power spectrum of a 1024-point FFT, ``|X|^2 / n_fft`` (513 bins);
5. 40 triangular mel filters (HTK mel scale) from 0 to 8000 Hz, evaluated at each bin's frequency;
6. natural log, with energies floored at ``log_floor`` (or, with ``log_floor_db``, at each segment's
   maximum minus that many dB, so scaling the input shifts every cell by the same constant);
7. optionally (``segment_norm``) minus each segment's mean or maximum log energy, which removes that
   constant: the features no longer depend on the input's level.

Each step is a module holding its constant tables (window, mel matrix, DFT basis) as buffers, so the
whole thing runs batched on CPU or GPU and exports to ONNX. The FFT runs as ``torch.fft.rfft``
(``fft="rfft"``, fast in eager mode) or as one strided convolution with the windowed DFT basis
(``fft="matmul"``: plain matrix products, used for ONNX export); both give the same numbers.

Shapes: waveforms ``(batch, samples)``; features ``(batch, 1, frames, mels)``.

Options for front-ends of pretrained networks (all off by default; the EfficientAT models use every one,
see :func:`earmark.models.efficientat.efficientat_features`):

- ``preemphasis_mode="valid"``: ``y[t] = x[t+1] - coef * x[t]``, one sample shorter (a ``[-coef, 1]``
  convolution without padding, as EfficientAT does);
- ``center=True``: frames centred on ``t * hop`` with reflect padding, as ``torch.stft(center=True)``; a
  window shorter than ``n_fft`` sits in the middle of the FFT frame, which changes only the phase, so the
  power spectrum is that of the zero-padded frame; ``S`` samples give ``1 + S // hop`` frames;
- ``power_norm=False``: ``|X|^2`` without the ``/ n_fft``;
- ``mel_filters="kaldi"``: Kaldi's bank (``torchaudio.compliance.kaldi.get_mel_banks``): mel
  ``1127 ln(1 + f / 700)``, triangles linear in mel over the bins ``0 .. n_fft/2 - 1``, a zero column for
  the Nyquist bin; filters narrower than a bin may be empty (as in Kaldi);
- ``log_offset``: ``log(x + log_offset)`` instead of the floor.
"""
from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

Window = Literal["hamming", "hann", "rectangular"]
FFTMode = Literal["rfft", "matmul"]
PreemphasisMode = Literal["keep_first", "valid"]
MelFilters = Literal["htk", "kaldi"]
SegmentNorm = Literal["none", "mean", "max"]


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0,
                   f_max: float | None = None) -> np.ndarray:
    """Triangular mel filters, shape ``(n_fft // 2 + 1, n_mels)``, peak 1, on the FFT bin frequencies."""
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max <= sample_rate / 2 + 1e-6:
        raise ValueError(f"need 0 <= f_min < f_max <= sample_rate/2, got f_min={f_min}, f_max={f_max}, "
                         f"sample_rate={sample_rate}")
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - lower) / (centre - lower)
    falling = (upper - freqs[None, :]) / (upper - centre)
    bank = np.maximum(0.0, np.minimum(rising, falling))
    empty = np.flatnonzero(bank.max(axis=1) == 0)
    if empty.size:
        raise ValueError(f"{empty.size} of {n_mels} mel filters fall between FFT bins (too many mels for "
                         f"n_fft={n_fft}); use fewer mels or a larger n_fft")
    return bank.T.astype(np.float32)


def kaldi_mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0,
                         f_max: float | None = None) -> np.ndarray:
    """Kaldi's mel filters (as ``torchaudio.compliance.kaldi.get_mel_banks`` without VTLN, plus a zero
    Nyquist column), shape ``(n_fft // 2 + 1, n_mels)``: triangles linear in ``1127 ln(1 + f / 700)``."""
    nyquist = sample_rate / 2
    f_max = nyquist if f_max is None else (f_max + nyquist if f_max <= 0 else f_max)
    if not 0 <= f_min < f_max <= nyquist + 1e-6:
        raise ValueError(f"need 0 <= f_min < f_max <= sample_rate/2, got f_min={f_min}, f_max={f_max}, "
                         f"sample_rate={sample_rate}")
    mel_lo, mel_hi = (1127.0 * np.log1p(np.float64(f) / 700.0) for f in (f_min, f_max))
    delta = (mel_hi - mel_lo) / (n_mels + 1)
    left = mel_lo + np.arange(n_mels, dtype=np.float64)[:, None] * delta
    centre, right = left + delta, left + 2 * delta
    mel = 1127.0 * np.log1p(np.arange(n_fft // 2, dtype=np.float64) * (sample_rate / n_fft) / 700.0)[None, :]
    bank = np.maximum(0.0, np.minimum((mel - left) / (centre - left), (right - mel) / (right - centre)))
    return np.pad(bank, ((0, 0), (0, 1))).T.astype(np.float32)


def make_window(kind: Window, length: int) -> np.ndarray:
    if kind == "hamming":
        return np.hamming(length).astype(np.float32)
    if kind == "hann":
        return np.hanning(length).astype(np.float32)
    if kind == "rectangular":
        return np.ones(length, dtype=np.float32)
    raise ValueError(f"unknown window {kind!r}; use hamming, hann or rectangular")


def num_frames(n_samples: int, frame_length: int, hop_length: int) -> int:
    """Frames for a signal, the last one zero-padded: ``1 + ceil((S - L) / hop)`` (at least 1)."""
    if n_samples <= frame_length:
        return 1
    return 1 + math.ceil((n_samples - frame_length) / hop_length)


class PreEmphasis(nn.Module):
    """``y[t] = x[t] - coef * x[t-1]``, on ``(batch, samples)``; ``mode="valid"``: ``t >= 1`` only (one
    sample shorter, ``y[0] = x[1] - coef * x[0]``)."""

    def __init__(self, coef: float = 0.97, mode: PreemphasisMode = "keep_first") -> None:
        super().__init__()
        if not 0.0 <= coef < 1.0:
            raise ValueError(f"pre-emphasis coefficient must be in [0, 1), got {coef}")
        if mode not in ("keep_first", "valid"):
            raise ValueError(f"pre-emphasis mode must be keep_first or valid, got {mode!r}")
        self.coef, self.mode = float(coef), mode

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "valid":
            return x[:, 1:] - self.coef * x[:, :-1]
        if self.coef == 0.0:
            return x
        return torch.cat([x[:, :1], x[:, 1:] - self.coef * x[:, :-1]], dim=1)


class PowerSpectrogram(nn.Module):
    """Frames, window and ``|FFT|^2 / n_fft``: ``(batch, samples)`` -> ``(batch, frames, n_fft//2+1)``."""

    window: Tensor
    dft_basis: Tensor

    def __init__(self, frame_length: int, hop_length: int, n_fft: int, window: Window = "hamming",
                 fft: FFTMode = "rfft", center: bool = False, power_norm: bool = True) -> None:
        super().__init__()
        if frame_length <= 0 or hop_length <= 0:
            raise ValueError(f"frame and hop lengths must be positive, got {frame_length}, {hop_length}")
        if n_fft < frame_length:
            raise ValueError(f"n_fft={n_fft} must be at least the frame length {frame_length}")
        self.frame_length, self.hop_length, self.n_fft = frame_length, hop_length, n_fft
        self.fft, self.center, self.power_norm = fft, center, power_norm
        win = make_window(window, frame_length)
        self.register_buffer("window", torch.from_numpy(win), persistent=False)
        # Windowed real DFT basis over the frame (the zero padding to n_fft adds nothing), as a conv kernel.
        k = np.arange(n_fft // 2 + 1)[:, None]
        t = np.arange(frame_length)[None, :]
        angle = 2.0 * np.pi * k * t / n_fft
        basis = np.concatenate([np.cos(angle), -np.sin(angle)], axis=0) * win[None, :]
        self.register_buffer("dft_basis", torch.from_numpy(basis.astype(np.float32))[:, None, :],
                             persistent=False)

    @property
    def n_freqs(self) -> int:
        return self.n_fft // 2 + 1

    def center_pad(self) -> tuple[int, int]:
        """Reflect padding (left, right) of ``center=True``: ``torch.stft``'s ``n_fft // 2`` each side, less
        what falls outside the window centred in the FFT frame."""
        offset = (self.n_fft - self.frame_length) // 2
        half = self.n_fft // 2
        return half - offset, half - (self.n_fft - self.frame_length - offset)

    def pad(self, x: Tensor) -> Tensor:
        """Zero-pad the end so the last frame is complete (works on symbolic lengths for export); with
        ``center``, reflect-pad both ends instead (the signal must be longer than the padding)."""
        if self.center:
            left, right = self.center_pad()
            return nn.functional.pad(x[:, None], (left, right), mode="reflect")[:, 0]
        n, frame, hop = x.shape[-1], self.frame_length, self.hop_length
        extra = frame - n if n <= frame else (frame - n) % hop
        return nn.functional.pad(x, (0, extra))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2:
            raise ValueError(f"expected waveforms of shape (batch, samples), got {tuple(x.shape)}")
        x = self.pad(x)
        if self.fft == "rfft":
            frames = x.unfold(-1, self.frame_length, self.hop_length) * self.window
            spec = torch.view_as_real(torch.fft.rfft(frames, n=self.n_fft))
            power = (spec * spec).sum(-1)
        else:
            out = nn.functional.conv1d(x[:, None, :], self.dft_basis, stride=self.hop_length)
            re, im = out[:, : self.n_freqs], out[:, self.n_freqs:]
            power = (re.square() + im.square()).transpose(1, 2)
        return power / self.n_fft if self.power_norm else power


class MelScale(nn.Module):
    """Power spectrum ``(..., n_freqs)`` -> mel energies ``(..., n_mels)``."""

    fb: Tensor

    def __init__(self, sample_rate: int, n_fft: int, n_mels: int = 40, f_min: float = 0.0,
                 f_max: float | None = None, filters: MelFilters = "htk") -> None:
        super().__init__()
        if filters not in ("htk", "kaldi"):
            raise ValueError(f"mel filters must be htk or kaldi, got {filters!r}")
        make = kaldi_mel_filterbank if filters == "kaldi" else mel_filterbank
        bank = make(sample_rate, n_fft, n_mels, f_min, f_max)
        self.register_buffer("fb", torch.from_numpy(bank), persistent=False)

    def forward(self, power: Tensor) -> Tensor:
        return power @ self.fb


class LogMelFilterBank(nn.Module):
    """Waveforms ``(batch, samples)`` -> log mel energies ``(batch, 1, frames, n_mels)``.

    Args:
        sample_rate: of the input, in Hz.
        n_mels: number of triangular mel bands.
        n_fft: FFT size (frames are zero-padded to it).
        win_ms, hop_ms: frame length and hop in milliseconds.
        f_min, f_max: band edges in Hz (``f_max=None``: Nyquist).
        preemphasis: pre-emphasis coefficient (0 disables it).
        window: ``hamming``, ``hann`` or ``rectangular``.
        log_floor: energies are floored here before the log (when ``log_floor_db`` is None).
        log_floor_db: floor each segment's energies at its maximum minus this many dB instead (a digitally
            silent segment is floored at the smallest positive float).
        segment_norm: subtract each segment's ``mean`` or ``max`` log energy (over frames and bands), or
            ``none``. Neither this nor ``log_floor_db`` applies with ``log_offset`` (a pretrained network's
            front-end is kept exact).
        fft: ``rfft`` (fast) or ``matmul`` (matrix products only; ONNX friendly). Same results.
        preemphasis_mode: ``keep_first`` (``y[0] = x[0]``) or ``valid`` (one sample shorter).
        center: centred frames with reflect padding (``torch.stft(center=True)``).
        power_norm: divide the power spectrum by ``n_fft``.
        mel_filters: ``htk`` (triangles on the bin frequencies) or ``kaldi``.
        log_offset: take ``log(x + log_offset)`` instead of flooring at ``log_floor``.
    """

    def __init__(self, sample_rate: int = 16000, n_mels: int = 40, n_fft: int = 1024, win_ms: float = 25.0,
                 hop_ms: float = 10.0, f_min: float = 0.0, f_max: float | None = 8000.0,
                 preemphasis: float = 0.97, window: Window = "hamming", log_floor: float = 1e-6,
                 fft: FFTMode = "rfft", preemphasis_mode: PreemphasisMode = "keep_first", center: bool = False,
                 power_norm: bool = True, mel_filters: MelFilters = "htk", log_offset: float | None = None,
                 log_floor_db: float | None = None, segment_norm: SegmentNorm = "none") -> None:
        super().__init__()
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        if n_mels <= 0:
            raise ValueError(f"n_mels must be positive, got {n_mels}")
        if log_floor <= 0:
            raise ValueError(f"log_floor must be positive, got {log_floor}")
        if log_offset is not None and log_offset <= 0:
            raise ValueError(f"log_offset must be positive, got {log_offset}")
        if log_floor_db is not None and log_floor_db <= 0:
            raise ValueError(f"log_floor_db must be positive, got {log_floor_db}")
        self.sample_rate, self.n_mels, self.log_floor = sample_rate, n_mels, float(log_floor)
        self.log_offset = None if log_offset is None else float(log_offset)
        if segment_norm not in ("none", "mean", "max"):
            raise ValueError(f"segment_norm must be none, mean or max, got {segment_norm!r}")
        self.log_floor_db, self.segment_norm = log_floor_db, segment_norm
        frame = int(round(win_ms * sample_rate / 1000))
        hop = int(round(hop_ms * sample_rate / 1000))
        self.preemphasis = PreEmphasis(preemphasis, preemphasis_mode)
        self.spectrogram = PowerSpectrogram(frame, hop, n_fft, window, fft, center, power_norm)
        self.mel = MelScale(sample_rate, n_fft, n_mels, f_min, f_max, mel_filters)

    @property
    def hop_length(self) -> int:
        return self.spectrogram.hop_length

    def set_fft(self, mode: FFTMode) -> None:
        self.spectrogram.fft = mode

    def num_frames(self, n_samples: int) -> int:
        if self.preemphasis.mode == "valid":
            n_samples -= 1
        if self.spectrogram.center:
            return 1 + n_samples // self.spectrogram.hop_length
        return num_frames(n_samples, self.spectrogram.frame_length, self.spectrogram.hop_length)

    def forward(self, wave: Tensor) -> Tensor:
        mel = self.mel(self.spectrogram(self.preemphasis(wave)))
        if self.log_offset is not None:  # a pretrained network's front-end: exactly its maths
            return (mel + self.log_offset).log().unsqueeze(1)
        if self.log_floor_db is None:
            logmel = mel.clamp_min(self.log_floor).log()
        else:
            peak = mel.amax(dim=(1, 2), keepdim=True) * 10.0 ** (-self.log_floor_db / 10.0)
            logmel = torch.maximum(mel, peak.clamp_min(torch.finfo(mel.dtype).tiny)).log()
        if self.segment_norm == "mean":
            logmel = logmel - logmel.mean(dim=(1, 2), keepdim=True)
        elif self.segment_norm == "max":
            logmel = logmel - logmel.amax(dim=(1, 2), keepdim=True)
        return logmel.unsqueeze(1)


class MFCC(nn.Module):
    """Waveforms -> MFCCs ``(batch, 1, frames, n_mfcc)``: the filter bank, then an orthonormal DCT-II."""

    dct: Tensor

    def __init__(self, n_mfcc: int = 20, **fbank_kwargs: object) -> None:
        super().__init__()
        self.fbank = LogMelFilterBank(**fbank_kwargs)  # type: ignore[arg-type]
        n_mels = self.fbank.n_mels
        if not 0 < n_mfcc <= n_mels:
            raise ValueError(f"n_mfcc must be in 1..n_mels={n_mels}, got {n_mfcc}")
        n = np.arange(n_mels)[None, :]
        k = np.arange(n_mfcc)[:, None]
        dct = np.cos(np.pi / n_mels * (n + 0.5) * k) * np.sqrt(2.0 / n_mels)
        dct[0] /= np.sqrt(2.0)
        self.register_buffer("dct", torch.from_numpy(dct.T.astype(np.float32)), persistent=False)

    def set_fft(self, mode: FFTMode) -> None:
        self.fbank.set_fft(mode)

    def forward(self, wave: Tensor) -> Tensor:
        return self.fbank(wave) @ self.dct
