"""CRNN: convolutions that pool frequency away while keeping time, a GRU over time, a classifier.

As in the divide-and-conquer genre system; about 0.4 M parameters with the defaults.
"""
from __future__ import annotations

from torch import Tensor, nn

from .registry import register_model


class CRNN(nn.Module):
    """``(batch, 1, frames, mels)`` -> logits. Time is pooled by 4 in all, frequency down to 1."""

    def __init__(self, num_classes: int, in_chans: int = 1, channels: tuple[int, ...] = (32, 64, 128, 128),
                 hidden: int = 96, dropout: float = 0.3) -> None:
        super().__init__()
        pools = [(2, 2), (2, 2), (1, 2), (1, 2)]
        layers: list[nn.Module] = []
        cin = in_chans
        for cout, pool in zip(channels, pools):
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ELU(inplace=True),
                       nn.MaxPool2d(pool), nn.Dropout(0.1)]
            cin = cout
        self.conv = nn.Sequential(*layers)
        self.gru = nn.GRU(cin, hidden, num_layers=1, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(x).mean(dim=3)          # (B, C, T'): frequency pooled away
        out, _ = self.gru(h.transpose(1, 2))  # (B, T', 2H)
        return self.head(self.dropout(out.mean(dim=1)))


@register_model(family="crnn")
def crnn(num_classes: int, in_chans: int = 1, dropout: float = 0.3, hidden: int = 96) -> nn.Module:
    """Conv blocks + bidirectional GRU over time (~0.4 M parameters): the genre CRNN."""
    return CRNN(num_classes, in_chans, hidden=hidden, dropout=dropout)
