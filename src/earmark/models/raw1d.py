"""A 1-D CNN on raw waveforms (after M5, Dai et al. 2017): strided convolutions, pooling, dense, dropout."""
from __future__ import annotations

from torch import Tensor, nn

from .registry import register_model


class Raw1DCNN(nn.Module):
    """``(batch, samples)`` -> logits."""

    def __init__(self, num_classes: int, channels: tuple[int, ...] = (32, 32, 64, 128), first_kernel: int = 80,
                 first_stride: int = 4, dense: int = 128, dropout: float = 0.3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for i, cout in enumerate(channels):
            k, s = (first_kernel, first_stride) if i == 0 else (3, 1)
            layers += [nn.Conv1d(cin, cout, k, stride=s, padding=k // 2, bias=False), nn.BatchNorm1d(cout),
                       nn.ReLU(inplace=True)]
            if i < len(channels) - 1:
                layers.append(nn.MaxPool1d(4))
            cin = cout
        self.input_norm = nn.BatchNorm1d(1)
        self.conv = nn.Sequential(*layers)
        self.dense = nn.Sequential(nn.Linear(cin, dense), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.head = nn.Linear(dense, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 3:  # (B, 1, S)
            x = x[:, 0]
        h = self.conv(self.input_norm(x[:, None, :]))
        return self.head(self.dense(h.mean(dim=2)))


@register_model(family="raw1d", input="waveform")
def raw1d(num_classes: int, dropout: float = 0.3, in_chans: int = 1) -> nn.Module:
    """1-D CNN on raw waveforms (M5-style), ~0.07 M parameters."""
    return Raw1DCNN(num_classes, dropout=dropout)
