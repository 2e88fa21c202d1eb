"""Small convolutional networks on 1-channel spectrograms ``(batch, 1, frames, mels)``."""
from __future__ import annotations

from torch import Tensor, nn

from .registry import register_model


def conv_bn(cin: int, cout: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class MeanMaxPool(nn.Module):
    """Average over frequency, then mean + max over time: ``(B, C, T, F)`` -> ``(B, C)``."""

    def forward(self, x: Tensor) -> Tensor:
        x = x.mean(dim=3)
        return x.mean(dim=2) + x.amax(dim=2)


class SmallCNN(nn.Module):
    """Conv blocks (conv-BN-ReLU[-conv-BN-ReLU], 2x2 max-pool), mean+max pooling, dropout, linear head."""

    def __init__(self, num_classes: int, channels: tuple[int, ...] = (32, 64, 128), in_chans: int = 1,
                 dropout: float = 0.2, double: bool = False) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        cin = in_chans
        for i, cout in enumerate(channels):
            layers = [conv_bn(cin, cout)] + ([conv_bn(cout, cout)] if double else [])
            if i < len(channels) - 1:
                layers.append(nn.MaxPool2d(2))  # type: ignore[arg-type]
            blocks.append(nn.Sequential(*layers))
            cin = cout
        self.features = nn.Sequential(*blocks)
        self.pool = MeanMaxPool()
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.dropout(self.pool(self.features(x))))


@register_model(family="cnn")
def cnn(num_classes: int, in_chans: int = 1, dropout: float = 0.2) -> nn.Module:
    """3 conv layers (32-64-128), ~0.1 M parameters: the quick baseline."""
    return SmallCNN(num_classes, (32, 64, 128), in_chans, dropout)


@register_model(family="cnn")
def cnn4(num_classes: int, in_chans: int = 1, dropout: float = 0.2) -> nn.Module:
    """4 conv blocks (32-64-128-256), ~0.4 M parameters."""
    return SmallCNN(num_classes, (32, 64, 128, 256), in_chans, dropout)


@register_model(family="cnn")
def cnn5(num_classes: int, in_chans: int = 1, dropout: float = 0.2) -> nn.Module:
    """5 conv blocks (16-32-64-128-256), ~0.4 M parameters; wide layers at low resolution (fast on CPU)."""
    return SmallCNN(num_classes, (16, 32, 64, 128, 256), in_chans, dropout)


@register_model(family="cnn")
def cnn8(num_classes: int, in_chans: int = 1, dropout: float = 0.2) -> nn.Module:
    """4 double-conv blocks (32-64-128-256), ~1.2 M parameters."""
    return SmallCNN(num_classes, (32, 64, 128, 256), in_chans, dropout, double=True)

