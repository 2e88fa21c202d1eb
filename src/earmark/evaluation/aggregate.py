"""From segment scores to one answer per track."""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

Aggregate = Literal["mean", "vote", "sum"]


def aggregate_track(probs: np.ndarray, method: Aggregate = "mean") -> np.ndarray:
    """One probability vector for a track from its segments' ``(n_segments, classes)`` probabilities.

    ``mean``: average probability (soft voting over segments). ``sum``: summed scores, normalised, the
    same ranking as ``mean``. ``vote``: share of segments that chose each class (majority vote), ties
    broken by the mean probability.
    """
    if probs.ndim != 2 or probs.shape[0] == 0:
        raise ValueError(f"expected (n_segments >= 1, classes) probabilities, got shape {probs.shape}")
    if method in ("mean", "sum"):
        total = probs.sum(axis=0)
        return total / total.sum()
    if method == "vote":
        votes = np.bincount(probs.argmax(axis=1), minlength=probs.shape[1]).astype(np.float64)
        share = votes / votes.sum()
        return share + 1e-6 * probs.mean(axis=0)  # tie-break, still sums to ~1
    raise ValueError(f"unknown aggregation {method!r}; use mean, vote or sum")


def aggregate_by_track(seg_probs: np.ndarray, track_of_segment: np.ndarray, method: Aggregate = "mean"
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Aggregate many tracks at once. Returns ``(track_ids, probs)`` in order of first appearance."""
    tracks, first = np.unique(track_of_segment, return_index=True)
    tracks = tracks[np.argsort(first)]
    out = np.stack([aggregate_track(seg_probs[track_of_segment == t], method) for t in tracks])
    return tracks, out


def aggregate_track_torch(seg_probs: Tensor, method: Aggregate = "mean") -> Tensor:
    """:func:`aggregate_track` in torch, batched: ``(batch, n_segments, classes)`` -> ``(batch, classes)``."""
    if method == "vote":
        classes = torch.arange(seg_probs.shape[2], device=seg_probs.device)
        votes = (seg_probs.argmax(dim=2, keepdim=True) == classes).float().mean(1)
        return votes + 1e-6 * seg_probs.mean(1)
    if method in ("mean", "sum"):
        total = seg_probs.sum(1)
        return total / total.sum(dim=1, keepdim=True)
    raise ValueError(f"unknown aggregation {method!r}; use mean, vote or sum")
