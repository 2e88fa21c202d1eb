"""ImageNet-style backbones from timm on spectrograms: ResNet, ResNeXt, Res2NeXt, MobileNetV2, EfficientNet.

Each takes ``(batch, in_chans, frames, mels)`` (1 channel, or 3 for a spectrogram shaped as an image),
with dropout before a new classifier. Local pretrained weights are loaded by :mod:`.pretrained`.
No weights are ever downloaded.
"""
from __future__ import annotations

from torch import nn

from .registry import register_model

#: earmark name -> timm architecture
TIMM_ARCHITECTURES = {
    "resnet18": "resnet18",
    "resnet34": "resnet34",
    "mobilenetv2": "mobilenetv2_100",
    "efficientnet_b0": "efficientnet_b0",
    "res2next50": "res2next50",
    "resnext101_32x8d": "resnext101_32x8d",
}


def timm_backbone(arch: str, num_classes: int, in_chans: int = 1, dropout: float = 0.2, **kwargs: object) -> nn.Module:
    import timm

    return timm.create_model(arch, pretrained=False, num_classes=num_classes, in_chans=in_chans,
                             drop_rate=dropout, **kwargs)  # type: ignore[arg-type]


def _register(name: str, description: str) -> None:
    arch = TIMM_ARCHITECTURES[name]

    def build(num_classes: int, in_chans: int = 1, dropout: float = 0.2, **kwargs: object) -> nn.Module:
        return timm_backbone(arch, num_classes, in_chans, dropout, **kwargs)

    build.__name__ = name
    register_model(name, family="backbone", description=description)(build)


_register("resnet18", "ResNet-18 (timm), 11 M parameters")
_register("resnet34", "ResNet-34 (timm), 21 M parameters: the singer-gender system")
_register("mobilenetv2", "MobileNetV2 (timm), 2.2 M parameters")
_register("efficientnet_b0", "EfficientNet-B0 (timm), 4 M parameters")
_register("res2next50", "Res2NeXt-50 (timm), 23 M parameters: the keyword system")
_register("resnext101_32x8d", "ResNeXt-101 32x8d (timm), 87 M parameters")
