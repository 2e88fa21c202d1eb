"""SpecAugment: zero random bands of frequency and spans of time on ``(batch, 1, frames, mels)``.

Features are standardised before augmentation, so a zero is the training mean.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import Augmentation


def _mask_along(x: Tensor, mask: Tensor, dim: int, n_masks: int, max_width: int) -> Tensor:
    size = x.shape[dim]
    max_width = min(max_width, size)
    if n_masks == 0 or max_width == 0:
        return x
    b = x.shape[0]
    width = torch.randint(0, max_width + 1, (b, n_masks), device=x.device)
    start = (torch.rand(b, n_masks, device=x.device) * (size - width + 1)).long()
    pos = torch.arange(size, device=x.device)[None, None, :]
    hit = ((pos >= start[..., None]) & (pos < (start + width)[..., None])).any(dim=1)  # (b, size)
    hit = hit & mask[:, None]
    shape = [b, 1, 1, 1]
    shape[dim] = size
    return x.masked_fill(hit.view(shape), 0.0)


class SpecAugment(Augmentation):
    """``freq_masks`` masks of up to ``freq_width`` bands and ``time_masks`` of up to ``time_width`` x frames."""

    def __init__(self, p: float = 0.5, freq_masks: int = 2, freq_width: int = 8, time_masks: int = 2,
                 time_width: float = 0.1) -> None:
        super().__init__(p)
        if freq_masks < 0 or time_masks < 0 or freq_width < 0 or time_width < 0:
            raise ValueError("SpecAugment: mask counts and widths must be non-negative")
        self.freq_masks, self.freq_width = int(freq_masks), int(freq_width)
        self.time_masks, self.time_width = int(time_masks), float(time_width)

    def params(self) -> dict[str, Any]:
        return {"p": self.p, "freq_masks": self.freq_masks, "freq_width": self.freq_width,
                "time_masks": self.time_masks, "time_width": self.time_width}

    def apply(self, x: Tensor, mask: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"SpecAugment expects (batch, channels, frames, mels), got {tuple(x.shape)}")
        x = _mask_along(x, mask, 3, self.freq_masks, self.freq_width)
        return _mask_along(x, mask, 2, self.time_masks, int(self.time_width * x.shape[2]))
