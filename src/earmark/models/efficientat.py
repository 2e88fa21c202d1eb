"""EfficientAT MobileNetV3 audio taggers (``mn01`` ... ``mn40``), written for earmark.

The networks of Schmid et al., "Efficient Large-Scale Audio Tagging via Transformer-to-CNN Knowledge
Distillation" (ICASSP 2023; GitHub ``fschmid56/EfficientAT``, MIT): a MobileNetV3-Large body whose
channels are scaled by a width multiplier, squeeze-and-excitation over channels, and an MLP head
(global average pooling, linear, hardswish, dropout, linear). Parameter names follow the upstream
models so that the released checkpoints load with ``load_state_dict(strict=True)``.

Input: log-mel features from the family's front-end (:func:`efficientat_features`: the project's filter
bank configured as upstream's, 128 mels at 32 kHz). :func:`build_mn` takes them
mels first, ``(batch, 1, mels, frames)``, as upstream does; the registered models (``mn04`` ...) take the
registry's layout ``(batch, channels, frames, mels)`` and transpose inside.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..config import FeatureConfig
from .registry import register_model

log = logging.getLogger(__name__)

Layout = Literal["mels_frames", "frames_mels"]

#: sample rate the released checkpoints were trained at
SAMPLE_RATE = 32000

#: the front-end settings of the released checkpoints (upstream ``AugmentMelSTFT`` at evaluation)
FRONTEND: dict[str, object] = {
    "kind": "logmel", "n_mels": 128, "n_fft": 1024, "win_ms": 25.0, "hop_ms": 10.0, "f_min": 0.0, "f_max": 15000.0,
    "preemphasis": 0.97, "preemphasis_mode": "valid", "window": "hann", "center": True, "power_norm": False,
    "mel_filters": "kaldi", "log_offset": 1e-5, "normalize": "fixed", "norm_offset": 4.5, "norm_scale": 5.0,
    "image_size": None}


def efficientat_features() -> tuple[FeatureConfig, int]:
    """The EfficientAT front-end as a :class:`FeatureConfig` and its sample rate (32 kHz): pre-emphasis as a
    ``[-0.97, 1]`` convolution, centred STFT (n_fft 1024, 800-sample symmetric Hann, hop 320), ``|X|^2``,
    128 Kaldi mel filters 0-15000 Hz, ``log(x + 1e-5)``, then ``(x + 4.5) / 5``."""
    return FeatureConfig(**FRONTEND), SAMPLE_RATE  # type: ignore[arg-type]


def apply_frontend(settings: dict[str, Any]) -> list[str]:
    """Give recipe ``settings`` (a dict, before validation) whose model is an EfficientAT network with
    pretrained weights the family's front-end and sample rate: the weights only work with them. Returns
    the settings it changed (logged), ``[]`` for another model."""
    model = settings.get("model") or {}
    if model.get("name") not in WIDTHS:
        return []
    features = settings.setdefault("features", {})
    audio = settings.setdefault("audio", {})
    if not isinstance(features, dict) or not isinstance(audio, dict):
        return []
    fields = FeatureConfig.model_fields
    changed = [f"features.{k}" for k, v in FRONTEND.items() if features.get(k, fields[k].default) != v]
    features.update(FRONTEND)
    if audio.get("sample_rate") != SAMPLE_RATE:
        audio["sample_rate"] = SAMPLE_RATE
        changed.append("audio.sample_rate")
    if changed:
        log.info("model %s with pretrained weights: using the EfficientAT front-end (%s)", model["name"],
                 ", ".join(changed))
    return changed


#: width multiplier of each registered model
WIDTHS: dict[str, float] = {"mn01": 0.1, "mn02": 0.2, "mn04": 0.4, "mn05": 0.5, "mn10": 1.0, "mn20": 2.0,
                            "mn30": 3.0, "mn40": 4.0}


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor`` (never below it, never more than 10% down)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


@dataclass(frozen=True)
class BlockSpec:
    """One inverted-residual block of MobileNetV3-Large (channels before width scaling)."""

    cin: int
    kernel: int
    expanded: int
    cout: int
    se: bool
    hardswish: bool
    stride: int


# MobileNetV3-Large (Howard et al. 2019, table 1): in, kernel, expanded, out, SE, hardswish, stride.
_LARGE = [BlockSpec(16, 3, 16, 16, False, False, 1), BlockSpec(16, 3, 64, 24, False, False, 2),
          BlockSpec(24, 3, 72, 24, False, False, 1), BlockSpec(24, 5, 72, 40, True, False, 2),
          BlockSpec(40, 5, 120, 40, True, False, 1), BlockSpec(40, 5, 120, 40, True, False, 1),
          BlockSpec(40, 3, 240, 80, False, True, 2), BlockSpec(80, 3, 200, 80, False, True, 1),
          BlockSpec(80, 3, 184, 80, False, True, 1), BlockSpec(80, 3, 184, 80, False, True, 1),
          BlockSpec(80, 3, 480, 112, True, True, 1), BlockSpec(112, 3, 672, 112, True, True, 1),
          BlockSpec(112, 5, 672, 160, True, True, 2), BlockSpec(160, 5, 960, 160, True, True, 1),
          BlockSpec(160, 5, 960, 160, True, True, 1)]


def conv_norm_act(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                  act: type[nn.Module] | None = nn.Hardswish) -> nn.Sequential:
    """Conv (no bias), BatchNorm (eps 1e-3, momentum 0.01), optional activation: keys ``0``, ``1``."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout, eps=0.001, momentum=0.01)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """Channel attention: mean over frequency and time, bottleneck MLP, sigmoid gate."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, squeeze)
        self.fc2 = nn.Linear(squeeze, channels)

    def forward(self, x: Tensor) -> Tensor:
        scale = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3))))))
        return x * scale[:, :, None, None]


class ChannelSE(nn.Module):
    """Upstream's "concurrent" SE with its channel branch only (the released models' ``se_dims='c'``)."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.conc_se_layers = nn.ModuleList([SqueezeExcite(channels, make_divisible(channels // reduction))])

    def forward(self, x: Tensor) -> Tensor:
        return self.conc_se_layers[0](x)


class InvertedResidual(nn.Module):
    """1x1 expansion, depthwise k x k, optional SE, 1x1 projection; residual when shapes allow."""

    def __init__(self, spec: BlockSpec, width: float) -> None:
        super().__init__()
        cin, mid, cout = (make_divisible(c * width) for c in (spec.cin, spec.expanded, spec.cout))
        act: type[nn.Module] = nn.Hardswish if spec.hardswish else nn.ReLU
        layers: list[nn.Module] = []
        if mid != cin:
            layers.append(conv_norm_act(cin, mid, act=act))
        layers.append(conv_norm_act(mid, mid, spec.kernel, spec.stride, groups=mid, act=act))
        if spec.se:
            layers.append(ChannelSE(mid))
        layers.append(conv_norm_act(mid, cout, act=None))
        self.block = nn.Sequential(*layers)
        self.residual = spec.stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        return out + x if self.residual else out


class MN(nn.Module):
    """An EfficientAT MobileNetV3: log-mel spectrograms -> logits ``(batch, num_classes)``.

    Attributes:
        embed_dim: size of :meth:`forward_features` (channels of the last convolution).
        layout: ``mels_frames`` (upstream's ``(B, C, mels, frames)``) or ``frames_mels`` (earmark's).
    """

    def __init__(self, width_mult: float = 1.0, num_classes: int = 527, in_chans: int = 1, dropout: float = 0.2,
                 layout: Layout = "mels_frames") -> None:
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")
        if layout not in ("mels_frames", "frames_mels"):
            raise ValueError(f"layout must be mels_frames or frames_mels, got {layout!r}")
        self.width_mult, self.layout = width_mult, layout
        first = make_divisible(_LARGE[0].cin * width_mult)
        last_in = make_divisible(_LARGE[-1].cout * width_mult)
        self.embed_dim = 6 * last_in
        hidden = make_divisible(1280 * width_mult)
        layers: list[nn.Module] = [conv_norm_act(in_chans, first, 3, 2)]
        layers += [InvertedResidual(spec, width_mult) for spec in _LARGE]
        layers.append(conv_norm_act(last_in, self.embed_dim))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(self.embed_dim, hidden),
                                        nn.Hardswish(), nn.Dropout(dropout), nn.Linear(hidden, num_classes))
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    @property
    def num_blocks(self) -> int:
        """Stages of :attr:`features` (input convolution, 15 inverted residuals, last convolution)."""
        return len(self.features)

    def get_classifier(self) -> nn.Module:
        """The final linear layer: the one replaced for new classes (the hidden layer keeps its weights)."""
        return self.classifier[5]

    def feature_maps(self, x: Tensor) -> Tensor:
        """The last convolution's output ``(batch, embed_dim, mels', frames')``."""
        if self.layout == "frames_mels":
            x = x.transpose(2, 3)
        return self.features(x)

    def forward_features(self, x: Tensor) -> Tensor:
        """The pooled embedding before the classifier, ``(batch, embed_dim)``."""
        return self.feature_maps(x).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.feature_maps(x))


def build_mn(width_mult: float = 1.0, num_classes: int = 527, in_chans: int = 1, dropout: float = 0.2,
             layout: Layout = "mels_frames") -> MN:
    """An EfficientAT MobileNet of a given width (``0.4`` for mn04), upstream's input layout by default."""
    return MN(width_mult, num_classes, in_chans, dropout, layout)


def _register(name: str, width: float) -> None:
    def factory(num_classes: int, in_chans: int = 1, dropout: float = 0.2) -> nn.Module:
        return build_mn(width, num_classes, in_chans, dropout, layout="frames_mels")

    factory.__doc__ = (f"EfficientAT MobileNetV3 x{width} (AudioSet checkpoint {name}_as); needs the efficientat "
                       "front-end (128 mels, 32 kHz)")
    register_model(name, family="efficientat")(factory)


for _name, _width in WIDTHS.items():
    _register(_name, _width)
