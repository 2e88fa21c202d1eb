"""Accuracy against ensemble size, from the members' saved test predictions (no retraining).

Every fold keeps ``test_member_probs.npy`` ``(members, segments, classes)`` and ``test_segment_files.npy``;
for sizes 1, 2, 4, ... N the first ``k`` members vote (soft and hard) and the tracks are scored.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..ensemble import vote  # noqa: E402
from ..utils.files import atomic_write, atomic_write_json, atomic_write_text  # noqa: E402
from .aggregate import aggregate_by_track  # noqa: E402

if TYPE_CHECKING:  # pragma: no cover
    from ..run import RunFolder


def ensemble_sizes(n: int) -> list[int]:
    """1, 2, 4, 8, ... up to and including ``n``."""
    sizes, k = [], 1
    while k < n:
        sizes.append(k)
        k *= 2
    return sizes + [n]


def _track_accuracy(seg_probs: np.ndarray, files: np.ndarray, truth: dict[int, int], aggregate: str) -> float:
    tracks, probs = aggregate_by_track(seg_probs, files, aggregate)  # type: ignore[arg-type]
    return float(np.mean([probs[j].argmax() == truth[int(t)] for j, t in enumerate(tracks)]))


def size_curve(member_probs: np.ndarray, files: np.ndarray, truth: dict[int, int], aggregate: str = "mean",
               weights: list[float] | None = None) -> list[dict[str, Any]]:
    """Track accuracy of the first k members, soft and hard voting, for k in :func:`ensemble_sizes`."""
    rows = []
    for k in ensemble_sizes(member_probs.shape[0]):
        w = None if weights is None else weights[:k]
        row: dict[str, Any] = {"members": k}
        for voting in ("soft", "hard"):
            row[voting] = _track_accuracy(vote(member_probs[:k], voting, w), files, truth, aggregate)
        rows.append(row)
    return rows


def write_ensemble_report(run_path: Path, folds: list[str], labels_of_file: dict[int, int], aggregate: str,
                          weights_by_fold: dict[str, list[float]] | None = None) -> list[dict[str, Any]] | None:
    """``ensemble_size.{json,md,png}`` in the run folder, averaged over folds. None for single models."""
    curves = []
    for fold in folds:
        d = run_path / "folds" / fold
        probs_path, files_path = d / "test_member_probs.npy", d / "test_segment_files.npy"
        if not probs_path.is_file():
            return None
        probs = np.load(probs_path)
        if probs.shape[0] < 2:
            return None
        weights = (weights_by_fold or {}).get(fold)
        curves.append(size_curve(probs, np.load(files_path), labels_of_file, aggregate, weights))
    if not curves:
        return None
    table = []
    for i, row in enumerate(curves[0]):
        entry = {"members": row["members"]}
        for voting in ("soft", "hard"):
            vals = [c[i][voting] for c in curves]
            entry[voting], entry[f"{voting}_std"] = float(np.mean(vals)), float(np.std(vals))
        table.append(entry)
    atomic_write_json(run_path / "ensemble_size.json", table)
    lines = ["| members | soft voting | hard voting |", "|---|---|---|"]
    lines += [f"| {r['members']} | {100 * r['soft']:.1f}% | {100 * r['hard']:.1f}% |" for r in table]
    atomic_write_text(run_path / "ensemble_size.md",
                      f"# Track accuracy against ensemble size ({len(curves)} fold(s), mean)\n\n" + "\n".join(lines)
                      + "\n")
    fig, ax = plt.subplots(figsize=(6, 4))
    sizes = [r["members"] for r in table]
    for voting, style in (("soft", "o-"), ("hard", "s--")):
        ax.errorbar(sizes, [r[voting] for r in table], yerr=[r[f"{voting}_std"] for r in table], fmt=style,
                    capsize=3, label=f"{voting} voting")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set_xlabel("ensemble members")
    ax.set_ylabel("track accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    atomic_write(run_path / "ensemble_size.png", lambda p: fig.savefig(p, format="png", dpi=120, bbox_inches="tight"))
    plt.close(fig)
    return table


def weights_from_members(run: "RunFolder | Path") -> dict[str, list[float]]:
    """The members' weights, fold by fold (in ``members.json`` order)."""
    from ..run import RunFolder

    out: dict[str, list[float]] = {}
    for m in (run if isinstance(run, RunFolder) else RunFolder(run)).members():
        out.setdefault(str(m.fold), []).append(m.weight)
    return out
