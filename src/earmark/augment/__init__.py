"""Augmentations, each with a probability and recorded parameters; built from a recipe's ``augment``."""
from __future__ import annotations

from torch import nn

from ..config import AugmentConfig
from .base import Augmentation
from .mixup import Mixup
from .spectrogram import SpecAugment, SpecWarp
from .waveform import Gain, GaussianNoise, TimeShift

__all__ = ["Augmentation", "Gain", "GaussianNoise", "TimeShift", "SpecAugment", "SpecWarp", "Mixup",
           "build_waveform_augment", "build_spec_augment", "build_mixup"]


def build_waveform_augment(cfg: AugmentConfig) -> nn.Sequential:
    steps: list[nn.Module] = []
    if cfg.shift.p > 0:
        steps.append(TimeShift(cfg.shift.p, cfg.shift.max_fraction))
    if cfg.gain.p > 0:
        steps.append(Gain(cfg.gain.p, cfg.gain.min_db, cfg.gain.max_db))
    if cfg.noise.p > 0:
        steps.append(GaussianNoise(cfg.noise.p, cfg.noise.min_snr_db, cfg.noise.max_snr_db))
    return nn.Sequential(*steps)


def build_spec_augment(cfg: AugmentConfig) -> nn.Sequential:
    steps: list[nn.Module] = []
    if cfg.warp.p > 0:
        steps.append(SpecWarp(cfg.warp.p, cfg.warp.max_time, cfg.warp.max_freq))
    s = cfg.specaugment
    if s.p > 0:
        steps.append(SpecAugment(s.p, s.freq_masks, s.freq_width, s.time_masks, s.time_width))
    return nn.Sequential(*steps)


def build_mixup(cfg: AugmentConfig) -> Mixup | None:
    return Mixup(cfg.mixup.p, cfg.mixup.alpha) if cfg.mixup.p > 0 else None
