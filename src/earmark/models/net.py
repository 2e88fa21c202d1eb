"""EarmarkNet: one module from waveform segments to class logits (frontend, normalisation, backbone).

Keeping the features inside the model means the preprocessing that trained it travels with its weights,
runs batched on the model's device, and is part of the exported ONNX graph.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..config import FeatureConfig, Recipe
from ..features.fbank import MFCC, LogMelFilterBank
from .registry import create_model, get_spec


class Standardize(nn.Module):
    """``(x - mean) / std`` with statistics of the training data, per band (last axis) or global; ``fixed``:
    ``(x + offset) / scale`` with given constants (never fitted)."""

    def __init__(self, n_bands: int, mode: str = "band", offset: float = 0.0, scale: float = 1.0) -> None:
        super().__init__()
        self.mode = mode
        size = n_bands if mode == "band" else 1
        self.register_buffer("mean", torch.full((size,), -offset if mode == "fixed" else 0.0))
        self.register_buffer("std", torch.full((size,), scale if mode == "fixed" else 1.0))

    @torch.no_grad()
    def fit(self, feats: Tensor) -> None:
        """Set the statistics from features ``(N, C, frames, bands)``."""
        if self.mode in ("none", "fixed"):
            return
        dims = (0, 1, 2) if self.mode == "band" else tuple(range(feats.dim()))
        self.mean.copy_(feats.mean(dim=dims).reshape(self.mean.shape))
        self.std.copy_(feats.std(dim=dims).clamp_min(1e-5).reshape(self.std.shape))

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "none":
            return x
        return (x - self.mean) / self.std


class ToImage(nn.Module):
    """Resize ``(B, 1, frames, mels)`` to a square ``size`` image with ``channels`` copies."""

    def __init__(self, size: int, channels: int = 3) -> None:
        super().__init__()
        self.size, self.channels = size, channels

    def forward(self, x: Tensor) -> Tensor:
        x = nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return x.expand(-1, self.channels, -1, -1) if self.channels > 1 else x


def build_frontend(cfg: FeatureConfig, sample_rate: int) -> nn.Module:
    """The feature extractor of a recipe: waveforms ``(B, S)`` -> ``(B, 1, frames, bands)`` or ``(B, S)``."""
    if cfg.kind == "waveform":
        return nn.Identity()
    kw: dict[str, Any] = dict(sample_rate=sample_rate, n_mels=cfg.n_mels, n_fft=cfg.n_fft, win_ms=cfg.win_ms,
                              hop_ms=cfg.hop_ms, f_min=cfg.f_min, f_max=cfg.f_max,
                              preemphasis=cfg.preemphasis, window=cfg.window, log_floor=cfg.log_floor,
                              preemphasis_mode=cfg.preemphasis_mode, center=cfg.center, power_norm=cfg.power_norm,
                              mel_filters=cfg.mel_filters, log_offset=cfg.log_offset,
                              log_floor_db=cfg.log_floor_db, segment_norm=cfg.segment_norm)
    if cfg.kind == "mfcc":
        return MFCC(n_mfcc=cfg.n_mfcc, **kw)
    return LogMelFilterBank(**kw)


def n_bands(cfg: FeatureConfig) -> int:
    return cfg.n_mfcc if cfg.kind == "mfcc" else cfg.n_mels


class EarmarkNet(nn.Module):
    """Waveform segments ``(batch, samples)`` -> logits ``(batch, classes)``."""

    def __init__(self, frontend: nn.Module, norm: nn.Module, image: nn.Module, backbone: nn.Module) -> None:
        super().__init__()
        self.frontend, self.norm, self.image, self.backbone = frontend, norm, image, backbone

    def features(self, wave: Tensor) -> Tensor:
        """The backbone's input: normalised features (or the waveform for raw-audio models)."""
        return self.image(self.norm(self.frontend(wave)))

    def forward(self, wave: Tensor) -> Tensor:
        return self.backbone(self.features(wave))

    def set_fft(self, mode: str) -> None:
        """Switch the filter bank's FFT between ``rfft`` (fast) and ``matmul`` (ONNX export)."""
        if hasattr(self.frontend, "set_fft"):
            self.frontend.set_fft(mode)  # type: ignore[operator]


def build_net(recipe: Recipe, num_classes: int) -> EarmarkNet:
    """A fresh network for a recipe (statistics and weights still to be set)."""
    spec = get_spec(recipe.model.name)
    if not spec.is_deep:
        raise ValueError(f"{recipe.model.name} is a classical model, not a network")
    feats = recipe.features
    if spec.input == "waveform":
        frontend, norm, image = nn.Identity(), nn.Identity(), nn.Identity()
        in_chans = 1
    else:
        if feats.kind == "waveform":
            raise ValueError(f"model {spec.name} takes spectrograms; set features.kind to logmel or mfcc")
        frontend = build_frontend(feats, recipe.audio.sample_rate)
        norm = Standardize(n_bands(feats), feats.normalize, feats.norm_offset, feats.norm_scale)
        image = ToImage(feats.image_size, feats.image_channels) if feats.image_size else nn.Identity()
        in_chans = feats.image_channels if feats.image_size else 1
    backbone = create_model(spec.name, num_classes, in_chans=in_chans, dropout=recipe.model.dropout,
                            **recipe.model.kwargs)
    return EarmarkNet(frontend, norm, image, backbone)
