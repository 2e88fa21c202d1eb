"""Waveform augmentations on batches ``(batch, samples)``: gain, Gaussian noise, time shift."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import Augmentation


class Gain(Augmentation):
    """Scale by a random gain, uniform in decibels between ``min_db`` and ``max_db``."""

    def __init__(self, p: float = 0.5, min_db: float = -6.0, max_db: float = 6.0) -> None:
        super().__init__(p)
        if min_db > max_db:
            raise ValueError(f"Gain: min_db={min_db} > max_db={max_db}")
        self.min_db, self.max_db = float(min_db), float(max_db)

    def params(self) -> dict[str, Any]:
        return {"p": self.p, "min_db": self.min_db, "max_db": self.max_db}

    def apply(self, x: Tensor, mask: Tensor) -> Tensor:  # type: ignore[override]
        db = torch.empty(x.shape[0], device=x.device).uniform_(self.min_db, self.max_db)
        gain = torch.where(mask, 10.0 ** (db / 20.0), torch.ones_like(db))
        return x * gain[:, None]


class GaussianNoise(Augmentation):
    """Add white noise at a random signal-to-noise ratio between ``min_snr_db`` and ``max_snr_db``."""

    def __init__(self, p: float = 0.5, min_snr_db: float = 10.0, max_snr_db: float = 40.0) -> None:
        super().__init__(p)
        if min_snr_db > max_snr_db:
            raise ValueError(f"GaussianNoise: min_snr_db={min_snr_db} > max_snr_db={max_snr_db}")
        self.min_snr_db, self.max_snr_db = float(min_snr_db), float(max_snr_db)

    def params(self) -> dict[str, Any]:
        return {"p": self.p, "min_snr_db": self.min_snr_db, "max_snr_db": self.max_snr_db}

    def apply(self, x: Tensor, mask: Tensor) -> Tensor:  # type: ignore[override]
        snr = torch.empty(x.shape[0], device=x.device).uniform_(self.min_snr_db, self.max_snr_db)
        rms = x.square().mean(dim=1).sqrt().clamp_min(1e-8)
        noise_rms = rms / 10.0 ** (snr / 20.0)
        noise = torch.randn_like(x) * (noise_rms * mask)[:, None]
        return x + noise


class TimeShift(Augmentation):
    """Roll each chosen example by a random offset of up to ``max_fraction`` of its length, either way."""

    def __init__(self, p: float = 0.5, max_fraction: float = 0.2) -> None:
        super().__init__(p)
        if not 0.0 <= max_fraction <= 1.0:
            raise ValueError(f"TimeShift: max_fraction must be in [0, 1], got {max_fraction}")
        self.max_fraction = float(max_fraction)

    def params(self) -> dict[str, Any]:
        return {"p": self.p, "max_fraction": self.max_fraction}

    def apply(self, x: Tensor, mask: Tensor) -> Tensor:  # type: ignore[override]
        n = x.shape[1]
        limit = int(self.max_fraction * n)
        if limit == 0:
            return x
        shifts = torch.randint(-limit, limit + 1, (x.shape[0],), device=x.device) * mask
        idx = (torch.arange(n, device=x.device)[None, :] - shifts[:, None]) % n
        return torch.gather(x, 1, idx)
