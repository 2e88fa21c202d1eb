"""Common ground of the augmentations: a probability ``p`` per example, parameters in one place."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class Augmentation(nn.Module):
    """An augmentation applied to each example of a batch with probability ``p``.

    Subclasses implement :meth:`apply` on the chosen examples and describe themselves with
    :meth:`params` (what a run records). They are no-ops in eval mode.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{type(self).__name__}: p must be in [0, 1], got {p}")
        self.p = float(p)

    def params(self) -> dict[str, Any]:
        return {"p": self.p}

    def describe(self) -> dict[str, Any]:
        return {"name": type(self).__name__, **self.params()}

    def chosen(self, batch: int, device: torch.device, generator: torch.Generator | None = None) -> Tensor:
        """Boolean mask of the examples this call augments."""
        return torch.rand(batch, device=device, generator=generator) < self.p

    def apply(self, x: Tensor, mask: Tensor) -> Tensor:  # type: ignore[override]  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        mask = self.chosen(x.shape[0], x.device)
        if not bool(mask.any()):
            return x
        return self.apply(x, mask)
