"""The graph of a whole run: one ``nn.Module`` from raw waveforms to class probabilities.

It does everything :class:`~earmark.inference.predictor.Predictor` does after decoding, with the torch
twins of the numpy code: cut into segments (:class:`~earmark.audio.segment.SegmentCutter`), run every
member with the run's test-time shifts, vote (:func:`~earmark.ensemble.vote_torch`) and aggregate the
segments (:func:`~earmark.evaluation.aggregate.aggregate_track_torch`). Exporting it and running the
export is :mod:`earmark.inference.onnx`.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from ..audio.segment import SegmentCutter
from ..ensemble import tta_shifts, vote_torch, with_tta_torch
from ..errors import RunError
from ..evaluation.aggregate import aggregate_track_torch

__all__ = ["SegmentCutter", "WaveformClassifier"]


class WaveformClassifier(nn.Module):
    """A whole run as one module: waveforms ``(batch, samples)`` -> ``(probabilities, segment_probabilities)``.

    ``probabilities``: ``(batch, classes)``; ``segment_probabilities``: ``(batch, n_segments, classes)``.
    """

    weights: Tensor

    def __init__(self, nets: list[nn.Module], weights: list[float], voting: str, aggregate: str,
                 cutter: SegmentCutter, tta: int = 1, tta_shift: float = 0.0) -> None:
        super().__init__()
        w = np.asarray(weights, dtype=np.float64)
        if len(nets) == 0 or w.shape != (len(nets),) or (w < 0).any() or w.sum() <= 0:
            raise RunError("an export needs at least one member and one non-negative weight per member")
        if voting not in ("soft", "hard"):
            raise RunError(f"unknown voting {voting!r} in members.json; use soft or hard")
        if aggregate not in ("mean", "sum", "vote"):
            raise RunError(f"unknown eval.aggregate {aggregate!r}; use mean, sum or vote")
        self.nets = nn.ModuleList(nets)
        self.register_buffer("weights", torch.from_numpy(w / w.sum()), persistent=False)  # float64
        self.voting, self.aggregate, self.cutter = voting, aggregate, cutter
        self.shifts = [int(round(s * cutter.length)) for s in tta_shifts(tta, tta_shift)]

    def member_probs(self, net: nn.Module, segments: Tensor) -> Tensor:
        """Softmax of one member, averaged over the test-time shifts: ``(n, L)`` -> ``(n, classes)``."""
        return with_tta_torch(lambda x: torch.softmax(net(x).float(), dim=1), segments, self.shifts)

    def combine(self, segments: Tensor) -> Tensor:
        """The members' vote on segments ``(n, L)`` -> ``(n, classes)`` (as :func:`earmark.ensemble.vote`).

        The vote is computed in float64 and rounded to float32, as the Predictor does, so the tie-break
        of hard voting rounds the same way (it decides ties when the segments are then counted).
        """
        probs = torch.stack([self.member_probs(net, segments) for net in self.nets])  # (members, n, C)
        return vote_torch(probs, self.voting, self.weights).float()  # type: ignore[arg-type]

    def track(self, seg_probs: Tensor) -> Tensor:
        """Segments ``(batch, n_segments, classes)`` -> one answer ``(batch, classes)`` (``aggregate_track``)."""
        return aggregate_track_torch(seg_probs, self.aggregate)  # type: ignore[arg-type]

    def forward(self, wave: Tensor) -> tuple[Tensor, Tensor]:
        segs = self.cutter(wave)
        batch, n_segments, length = segs.shape
        seg_probs = self.combine(segs.reshape(batch * n_segments, length)).reshape(batch, n_segments, -1)
        return self.track(seg_probs), seg_probs
