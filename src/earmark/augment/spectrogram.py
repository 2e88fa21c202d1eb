"""SpecAugment: zero random bands of frequency and spans of time on ``(batch, 1, frames, mels)``.

Features are standardised before augmentation, so a zero is the training mean.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

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

    def apply(self, x: Tensor, mask: Tensor) -> Tensor:  # type: ignore[override]
        if x.dim() != 4:
            raise ValueError(f"SpecAugment expects (batch, channels, frames, mels), got {tuple(x.shape)}")
        x = _mask_along(x, mask, 3, self.freq_masks, self.freq_width)
        return _mask_along(x, mask, 2, self.time_masks, int(self.time_width * x.shape[2]))


class SpecWarp(Augmentation):
    """Stretch or squeeze the time axis (tempo) and the frequency axis (pitch, vocal-tract length).

    Each chosen example gets factors ``1 + u`` with ``u`` uniform in ``[-max_time, max_time]`` and
    ``[-max_freq, max_freq]``; frequency is scaled about the lowest band, time about the centre.
    Uncovered areas are filled with zeros (the training mean).
    """

    def __init__(self, p: float = 0.5, max_time: float = 0.15, max_freq: float = 0.1) -> None:
        super().__init__(p)
        if not (0 <= max_time < 1 and 0 <= max_freq < 1):
            raise ValueError("SpecWarp: max_time and max_freq must be in [0, 1)")
        self.max_time, self.max_freq = float(max_time), float(max_freq)

    def params(self) -> dict[str, Any]:
        return {"p": self.p, "max_time": self.max_time, "max_freq": self.max_freq}

    def apply(self, x: Tensor, mask: Tensor) -> Tensor:  # type: ignore[override]
        b = x.shape[0]
        st = 1 + (torch.rand(b, device=x.device) * 2 - 1) * self.max_time
        sf = 1 + (torch.rand(b, device=x.device) * 2 - 1) * self.max_freq
        st = torch.where(mask, st, torch.ones_like(st))
        sf = torch.where(mask, sf, torch.ones_like(sf))
        # grid_sample coordinates: last dim (x) = mels, second-last (y) = frames, both in [-1, 1].
        theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
        theta[:, 0, 0] = 1 / sf            # mel axis: output band m reads input band m / sf ...
        theta[:, 0, 2] = 1 / sf - 1        # ... anchored at the lowest band (x = -1 stays -1)
        theta[:, 1, 1] = 1 / st            # time axis: about the centre
        grid = nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
        return nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
