"""The one constructor from a recipe's feature settings to the filter bank (models, summary features, display)."""
from __future__ import annotations

from typing import Any, Literal

from torch import nn

from ..config import FeatureConfig
from .fbank import MFCC, LogMelFilterBank


def fbank_kwargs(cfg: FeatureConfig, sample_rate: int) -> dict[str, Any]:
    """The filter bank's arguments (:class:`~earmark.features.fbank.LogMelFilterBank`) for ``cfg``."""
    return dict(sample_rate=sample_rate, n_mels=cfg.n_mels, n_fft=cfg.n_fft, win_ms=cfg.win_ms,
                hop_ms=cfg.hop_ms, f_min=cfg.f_min, f_max=cfg.f_max, preemphasis=cfg.preemphasis,
                window=cfg.window, log_floor=cfg.log_floor, preemphasis_mode=cfg.preemphasis_mode,
                center=cfg.center, power_norm=cfg.power_norm, mel_filters=cfg.mel_filters,
                log_offset=cfg.log_offset, log_floor_db=cfg.log_floor_db, segment_norm=cfg.segment_norm)


def build_logmel(cfg: FeatureConfig, sample_rate: int) -> LogMelFilterBank:
    """The log-mel filter bank of ``cfg`` (for MFCC settings: the bank under the DCT)."""
    return LogMelFilterBank(**fbank_kwargs(cfg, sample_rate))


def build_filterbank(cfg: FeatureConfig, sample_rate: int, kind: Literal["logmel", "mfcc"] | None = None
                     ) -> LogMelFilterBank | MFCC:
    """The log-mel (or MFCC) filter bank of ``cfg``; ``kind`` overrides ``cfg.kind``."""
    if (kind or cfg.kind) == "mfcc":
        return MFCC(n_mfcc=cfg.n_mfcc, **fbank_kwargs(cfg, sample_rate))
    return build_logmel(cfg, sample_rate)


def build_frontend(cfg: FeatureConfig, sample_rate: int) -> nn.Module:
    """The feature extractor of a recipe: waveforms ``(B, S)`` -> ``(B, 1, frames, bands)`` or ``(B, S)``."""
    if cfg.kind == "waveform":
        return nn.Identity()
    return build_filterbank(cfg, sample_rate)
