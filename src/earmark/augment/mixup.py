"""Mixup: convex combinations of pairs of examples and of their one-hot targets."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class Mixup(nn.Module):
    """With probability ``p`` per batch, mix it with a shuffled copy of itself, ``lam ~ Beta(alpha, alpha)``.

    ``forward(x, targets)`` takes features of any shape ``(batch, ...)`` and soft targets
    ``(batch, classes)``; it returns both mixed (or unchanged).
    """

    def __init__(self, p: float = 0.5, alpha: float = 0.4) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0 or alpha <= 0:
            raise ValueError(f"Mixup: need 0 <= p <= 1 and alpha > 0, got p={p}, alpha={alpha}")
        self.p, self.alpha = float(p), float(alpha)

    def describe(self) -> dict[str, Any]:
        return {"name": "Mixup", "p": self.p, "alpha": self.alpha}

    def forward(self, x: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        if not self.training or self.p == 0.0 or x.shape[0] < 2 or torch.rand(()) >= self.p:
            return x, targets
        lam = float(torch.distributions.Beta(self.alpha, self.alpha).sample())
        lam = max(lam, 1.0 - lam)  # the original example stays dominant
        perm = torch.randperm(x.shape[0], device=x.device)
        return lam * x + (1 - lam) * x[perm], lam * targets + (1 - lam) * targets[perm]
