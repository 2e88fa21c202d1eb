"""Summary features of a segment for the classical baselines: one vector per waveform, batched in torch.

Per frame (the filter bank's framing, see :mod:`earmark.features.fbank`):

- MFCCs and log-mel energies (the project's own filter bank), and their deltas (regression over +-2
  frames, as HTK and librosa compute them);
- spectral centroid, bandwidth and 85 % roll-off of the magnitude spectrum (kHz);
- spectral contrast in 7 octave bands anchored at Nyquist (``[0, ny/64], [ny/64, ny/32], ..., [ny/2, ny]``),
  the dB difference between the loudest and the quietest 2 % of the bins of each band;
- zero-crossing rate (crossings per sample).

Each is summarised over the frames of the segment by its mean and standard deviation.
With 40 mels and 20 MFCCs that is ``2 * (20 + 20 + 40 + 40 + 3 + 7 + 1) = 262`` numbers per segment.

Shapes: waveforms ``(batch, samples)`` -> features ``(batch, n_features)``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from torch import Tensor, nn

from ..config import FeatureConfig
from .fbank import MFCC

#: octave bands of the spectral contrast (the lowest is ``[0, nyquist / 2**(CONTRAST_BANDS - 1)]``)
CONTRAST_BANDS = 7


def deltas(x: Tensor, width: int = 2) -> Tensor:
    """Regression deltas along the time axis of ``(batch, frames, bands)``; edges repeat the end frames."""
    if width < 1:
        raise ValueError(f"delta width must be at least 1, got {width}")
    frames = x.shape[1]
    padded = torch.cat([x[:, :1].expand(-1, width, -1), x, x[:, -1:].expand(-1, width, -1)], dim=1)
    num = sum(n * (padded[:, width + n: width + n + frames] - padded[:, width - n: width - n + frames])
              for n in range(1, width + 1))
    return num / (2 * sum(n * n for n in range(1, width + 1)))  # type: ignore[return-value]


class SummaryFeatures(nn.Module):
    """Waveforms ``(batch, samples)`` -> summary statistics ``(batch, n_features)``.

    Args:
        sample_rate, n_mels, n_fft, win_ms, hop_ms, f_min, f_max, preemphasis, window, log_floor:
            the filter bank's settings (as :class:`~earmark.features.fbank.LogMelFilterBank`).
        n_mfcc: MFCCs per frame.
        fbank_options: the filter bank's other options (``log_floor_db``, ``segment_norm``, ...).
        rolloff: fraction of the spectral energy below the roll-off frequency.
        contrast_quantile: share of a band's bins that make its peak and its valley.
    """

    freqs_khz: Tensor
    mfcc: MFCC

    def __init__(self, sample_rate: int = 16000, n_mels: int = 40, n_mfcc: int = 20, n_fft: int = 1024,
                 win_ms: float = 25.0, hop_ms: float = 10.0, f_min: float = 0.0, f_max: float | None = 8000.0,
                 preemphasis: float = 0.97, window: str = "hamming", log_floor: float = 1e-6,
                 rolloff: float = 0.85, contrast_quantile: float = 0.02, **fbank_options: Any) -> None:
        super().__init__()
        if not 0.0 < rolloff < 1.0:
            raise ValueError(f"rolloff must be in (0, 1), got {rolloff}")
        if not 0.0 < contrast_quantile <= 0.5:
            raise ValueError(f"contrast_quantile must be in (0, 0.5], got {contrast_quantile}")
        self.mfcc = MFCC(n_mfcc=n_mfcc, sample_rate=sample_rate, n_mels=n_mels, n_fft=n_fft, win_ms=win_ms,
                         hop_ms=hop_ms, f_min=f_min, f_max=f_max, preemphasis=preemphasis, window=window,
                         log_floor=log_floor, **fbank_options)
        self.n_mels, self.n_mfcc = n_mels, n_mfcc
        self.rolloff, self.quantile = float(rolloff), float(contrast_quantile)
        n_freqs = n_fft // 2 + 1
        freqs = np.linspace(0.0, sample_rate / 2, n_freqs)
        self.register_buffer("freqs_khz", torch.from_numpy((freqs / 1000).astype(np.float32)), persistent=False)
        # Contrast bands as bin ranges; each has at least one bin.
        edges = [0.0] + [sample_rate / 2 / 2 ** k for k in range(CONTRAST_BANDS - 1, -1, -1)]
        bins = [int(np.searchsorted(freqs, e)) for e in edges]
        self.bands: list[tuple[int, int]] = []
        for lo, hi in zip(bins[:-1], bins[1:]):
            lo = min(lo, n_freqs - 1)
            self.bands.append((lo, max(hi, lo + 1)))
        self.bands[-1] = (self.bands[-1][0], n_freqs)

    @classmethod
    def from_config(cls, cfg: FeatureConfig, sample_rate: int) -> "SummaryFeatures":
        """The summary features of a recipe's feature settings (``kind`` is ignored)."""
        from .frontend import fbank_kwargs

        return cls(n_mfcc=min(cfg.n_mfcc, cfg.n_mels), **fbank_kwargs(cfg, sample_rate))

    def frame_names(self) -> list[str]:
        """Names of the per-frame features, in order."""
        return ([f"mfcc{i}" for i in range(self.n_mfcc)] + [f"d_mfcc{i}" for i in range(self.n_mfcc)]
                + [f"logmel{i}" for i in range(self.n_mels)] + [f"d_logmel{i}" for i in range(self.n_mels)]
                + ["centroid_khz", "bandwidth_khz", "rolloff_khz"]
                + [f"contrast{i}" for i in range(len(self.bands))] + ["zcr"])

    @property
    def feature_names(self) -> list[str]:
        """Names of the output columns: the mean of every frame feature, then their standard deviations."""
        names = self.frame_names()
        return [f"{n}_mean" for n in names] + [f"{n}_std" for n in names]

    @property
    def n_features(self) -> int:
        return 2 * len(self.frame_names())

    def spectral_shape(self, power: Tensor) -> Tensor:
        """Centroid, bandwidth, roll-off (kHz) and contrast (dB): ``(B, T, freqs)`` -> ``(B, T, 3 + bands)``."""
        mag = power.clamp_min(0).sqrt()
        total = mag.sum(-1, keepdim=True)
        f = self.freqs_khz
        centroid = (mag @ f).unsqueeze(-1) / total.clamp_min(1e-10)
        spread = (mag @ f.square()).unsqueeze(-1) / total.clamp_min(1e-10) - centroid.square()
        bandwidth = spread.clamp_min(0).sqrt()
        cum = mag.cumsum(-1)
        idx = torch.searchsorted(cum, (self.rolloff * total).contiguous()).clamp_max(f.numel() - 1)
        rolloff = f[idx]
        contrast = []
        for lo, hi in self.bands:
            band = power[..., lo:hi]
            q = max(1, int(round(self.quantile * (hi - lo))))
            if q == 1:
                peak, valley = band.amax(-1), band.amin(-1)
            else:
                peak = band.topk(q, dim=-1).values.mean(-1)
                valley = band.topk(q, dim=-1, largest=False).values.mean(-1)
            contrast.append(10 * (peak.clamp_min(1e-10).log10() - valley.clamp_min(1e-10).log10()))
        return torch.cat([centroid, bandwidth, rolloff, torch.stack(contrast, -1)], dim=-1)

    def zero_crossing_rate(self, wave: Tensor) -> Tensor:
        """Sign changes per sample in each frame: ``(B, S)`` -> ``(B, T, 1)``."""
        spec = self.mfcc.fbank.spectrogram
        frames = spec.pad(wave).unfold(-1, spec.frame_length, spec.hop_length)
        sign = torch.signbit(frames)
        return (sign[..., 1:] != sign[..., :-1]).float().mean(-1, keepdim=True)

    def frame_features(self, wave: Tensor) -> Tensor:
        """Per-frame features ``(batch, frames, len(frame_names()))``."""
        if wave.dim() != 2:
            raise ValueError(f"expected waveforms of shape (batch, samples), got {tuple(wave.shape)}")
        logmel = self.mfcc.fbank(wave)[:, 0]                 # (B, T, mels)
        mfcc = logmel @ self.mfcc.dct                        # (B, T, n_mfcc)
        power = self.mfcc.fbank.spectrogram(wave)            # (B, T, freqs), no pre-emphasis
        return torch.cat([mfcc, deltas(mfcc), logmel, deltas(logmel), self.spectral_shape(power),
                          self.zero_crossing_rate(wave)], dim=-1)

    def forward(self, wave: Tensor) -> Tensor:
        per_frame = self.frame_features(wave)
        return torch.cat([per_frame.mean(1), per_frame.std(1, unbiased=False)], dim=1)


@torch.inference_mode()
def summarize(extractor: SummaryFeatures, waves: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Summary features ``(n, n_features)`` (float64, for scikit-learn) of waveforms ``(n, samples)``."""
    out = [extractor(torch.from_numpy(np.ascontiguousarray(waves[b: b + batch_size], dtype=np.float32))).numpy()
           for b in range(0, waves.shape[0], batch_size)]
    if not out:
        return np.zeros((0, extractor.n_features), dtype=np.float64)
    return np.concatenate(out).astype(np.float64)


class SummaryTransformer(TransformerMixin, BaseEstimator):
    """:func:`summarize` as a scikit-learn step: waveforms ``(n, samples)`` -> feature rows ``(n, n_features)``.

    Stateless (nothing is fitted: the statistics are fixed functions of the filter bank), so a classical
    member is one :class:`sklearn.pipeline.Pipeline` from waveforms to ``predict_proba``.
    """

    def __init__(self, extractor: SummaryFeatures | None = None, batch_size: int = 256) -> None:
        self.extractor = extractor
        self.batch_size = batch_size

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> "SummaryTransformer":  # noqa: N803 - sklearn
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:  # noqa: N803 - sklearn's name
        if self.extractor is None:
            raise ValueError("SummaryTransformer needs a SummaryFeatures extractor")
        return summarize(self.extractor, np.asarray(X), self.batch_size)

    def __sklearn_is_fitted__(self) -> bool:
        return True
