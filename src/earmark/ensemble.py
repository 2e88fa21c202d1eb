"""Members that vote: soft or hard voting, optional weights, test-time augmentation.

A run's prediction is always an ensemble, of one member or many (seeds, folds), so ``predict``,
``evaluate``, ``serve`` and ``export`` treat any run as one model.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol

import numpy as np
import torch
from torch import Tensor

Voting = Literal["soft", "hard"]


class Member(Protocol):
    """Anything that maps waveform segments ``(n, samples)`` to probabilities ``(n, classes)``."""

    def predict_proba(self, waves: np.ndarray) -> np.ndarray: ...


#: Weight of the soft vote inside a hard vote: it only decides between classes whose vote shares are (nearly)
#: tied, and it is large enough to survive float32 (an exported graph's output), so torch and ONNX agree.
TIE_BREAK = 1e-3


def vote(member_probs: list[np.ndarray] | np.ndarray, voting: Voting = "soft",
         weights: np.ndarray | list[float] | None = None) -> np.ndarray:
    """Combine ``(members, n, classes)`` probabilities into ``(n, classes)``.

    ``soft``: weighted mean of probabilities. ``hard``: weighted share of members choosing each class,
    ties broken by the soft vote.
    """
    p = np.asarray(member_probs, dtype=np.float64)
    if p.ndim != 3:
        raise ValueError(f"expected (members, n, classes), got shape {p.shape}")
    w = np.ones(p.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (p.shape[0],) or (w < 0).any() or w.sum() <= 0:
        raise ValueError("weights must be one non-negative value per member, not all zero")
    w = w / w.sum()
    soft = np.tensordot(w, p, axes=1)
    if voting == "soft":
        return soft
    if voting == "hard":
        choice = p.argmax(axis=2)  # (members, n)
        share = np.zeros_like(soft)
        for m in range(p.shape[0]):
            share[np.arange(p.shape[1]), choice[m]] += w[m]
        return share * (1 - TIE_BREAK) + TIE_BREAK * soft
    raise ValueError(f"unknown voting {voting!r}; use soft or hard")


def vote_torch(member_probs: Tensor, voting: Voting, weights: Tensor) -> Tensor:
    """:func:`vote` in torch (for exported graphs): ``(members, n, classes)`` -> ``(n, classes)``, float64.

    ``weights``: one per member, already normalised to sum to 1. No data-dependent Python branching.
    """
    probs = member_probs.double()
    w = weights.double()[:, None, None]
    soft = (probs * w).sum(0)
    if voting == "soft":
        return soft
    classes = torch.arange(probs.shape[2], device=probs.device)
    chosen = (probs.argmax(dim=2, keepdim=True) == classes).double()  # one-hot (members, n, classes)
    share = (chosen * w).sum(0)
    return share * (1 - TIE_BREAK) + TIE_BREAK * soft


def tta_shifts(n: int, max_fraction: float) -> list[float]:
    """``n`` circular-shift fractions spread over ``[-max_fraction, max_fraction]`` (0 first)."""
    if n <= 1:
        return [0.0]
    grid = np.linspace(-max_fraction, max_fraction, n - 1 + (n - 1) % 2)
    others = [float(s) for s in grid if abs(s) > 1e-12][: n - 1]
    return [0.0, *others]


def with_tta(predict: Callable[[np.ndarray], np.ndarray], waves: np.ndarray, n: int, max_fraction: float
             ) -> np.ndarray:
    """Average ``predict`` over ``n`` time-shifted copies of each segment."""
    shifts = tta_shifts(n, max_fraction)
    length = waves.shape[1]
    total: np.ndarray | None = None
    for s in shifts:
        shifted = waves if s == 0 else np.roll(waves, int(round(s * length)), axis=1)
        p = predict(shifted)
        total = p if total is None else total + p
    assert total is not None  # tta_shifts gives at least one shift
    return total / len(shifts)


def with_tta_torch(predict: Callable[[Tensor], Tensor], segments: Tensor, shifts: list[int]) -> Tensor:
    """:func:`with_tta` in torch: ``predict`` averaged over circular shifts (in samples, 0 first)."""
    total: Tensor | None = None
    for shift in shifts:
        x = segments if shift == 0 else torch.roll(segments, shift, dims=1)
        p = predict(x)
        total = p if total is None else total + p
    assert total is not None  # at least one shift
    return total / len(shifts)
