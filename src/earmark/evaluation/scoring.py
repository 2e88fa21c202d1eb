"""Scoring predictions against labels: segments and tracks, and the prediction tables of a fold or an evaluation."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import Recipe
from ..ensemble import vote
from ..utils.files import atomic_write_csv
from .aggregate import aggregate_by_track
from .metrics import classification_scores

if TYPE_CHECKING:  # pragma: no cover
    from ..data.dataset import Dataset
    from ..data.loader import SegmentTable
    from ..data.split import Fold


def score_tracks(ds: "Dataset", table: "SegmentTable", seg_probs: np.ndarray, recipe: Recipe
                 ) -> tuple[dict[str, Any], list[list[Any]], list[list[Any]]]:
    """Segment and track scores, plus the rows of the segment and track prediction tables."""
    labels, sr = ds.labels, recipe.audio.sample_rate
    seg_true = ds.label_index[table.files]
    seg_pred = seg_probs.argmax(axis=1)
    tracks, track_probs = aggregate_by_track(seg_probs, table.files, recipe.eval.aggregate)
    track_true = ds.label_index[tracks]
    track_pred = track_probs.argmax(axis=1)
    seg_scores = classification_scores(seg_true, seg_pred, labels)
    track_scores = classification_scores(track_true, track_pred, labels)
    metrics = {
        "segment_accuracy": seg_scores["accuracy"], "segment_macro_f1": seg_scores["macro_f1"],
        "track_accuracy": track_scores["accuracy"], "track_macro_f1": track_scores["macro_f1"],
        "n_test_segments": seg_scores["n"], "n_test_tracks": track_scores["n"],
        "per_class": track_scores["per_class"], "confusion": track_scores["confusion"],
        "segment_confusion": seg_scores["confusion"],
    }
    paths = [str(ds.manifest.items[int(f)].path) for f in table.files]
    seg_rows = [[paths[k], f"{table.starts[k] / sr:.3f}", f"{(table.starts[k] + table.length) / sr:.3f}",
                 labels[seg_true[k]], labels[seg_pred[k]], *(f"{p:.5f}" for p in seg_probs[k])]
                for k in range(len(table))]
    track_rows = [[str(ds.manifest.items[int(t)].path), labels[track_true[j]], labels[track_pred[j]],
                   *(f"{p:.5f}" for p in track_probs[j])] for j, t in enumerate(tracks)]
    return metrics, seg_rows, track_rows


def write_prediction_tables(segments_csv: Path, tracks_csv: Path, labels: list[str], seg_rows: list[list[Any]],
                            track_rows: list[list[Any]]) -> None:
    """The segment and track prediction tables (rows from :func:`score_tracks`)."""
    header_probs = [f"p_{lbl}" for lbl in labels]
    atomic_write_csv(segments_csv, ["path", "start_s", "end_s", "label", "predicted", *header_probs], seg_rows)
    atomic_write_csv(tracks_csv, ["path", "label", "predicted", *header_probs], track_rows)


def val_accuracy(recipe: Recipe, ds: "Dataset", fold: "Fold", members: list[Any], weights: list[float]
                 ) -> float | None:
    """Segment accuracy of the fold's ensemble on its validation files (used to choose between variants)."""
    from ..data.loader import SegmentTable
    from ..inference.members import member_segment_probs

    table = SegmentTable.build(ds.store, fold.val, recipe.segment, recipe.audio.sample_rate)
    if len(table) == 0:
        return None
    probs = vote(member_segment_probs(members, ds, table, recipe), recipe.ensemble.voting, weights)
    return float((probs.argmax(1) == ds.label_index[table.files]).mean())
