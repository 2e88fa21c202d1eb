"""Scoring a finished run on a labeled dataset (``earmark evaluate``)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..data.dataset import load_dataset
from ..data.loader import SegmentTable
from ..errors import DatasetError
from ..evaluation.plots import plot_confusion, write_confusion_csv
from ..evaluation.scoring import score_tracks, write_prediction_tables
from ..utils.files import atomic_write_csv, atomic_write_json

log = logging.getLogger(__name__)


def evaluate(run_dir: str | Path, data: str | Path, out: str | Path | None = None,
             show_progress: bool = True) -> dict[str, Any]:
    """Score a finished run on a labeled dataset; writes metrics and plots to ``out``."""
    from ..inference.predictor import Predictor

    predictor = Predictor(run_dir)
    recipe = predictor.recipe
    ds = load_dataset(data, recipe.model_copy(update={"data": recipe.data.model_copy(
        update={"max_files_per_class": None})}), labels=predictor.labels, show_progress=show_progress)
    unknown = sorted({it.label for it, li in zip(ds.manifest.items, ds.label_index) if li < 0})
    if unknown:
        log.warning("classes %s are not known to the run; their files are left out", unknown)
    usable = ds.usable
    if usable.size == 0:
        raise DatasetError(f"{data}: no usable files with classes the run knows ({predictor.labels})")
    table = SegmentTable.build(ds.store, usable, recipe.segment, recipe.audio.sample_rate)
    chunks = [predictor.segment_probs(table.read(ds.store, np.arange(b, min(b + 1024, len(table)))))
              for b in range(0, len(table), 1024)]
    seg_probs = np.concatenate(chunks)
    metrics, seg_rows, track_rows = score_tracks(ds, table, seg_probs, recipe)
    out_dir = Path(out) if out else Path(run_dir) / "evaluations" / Path(data).resolve().name
    out_dir.mkdir(parents=True, exist_ok=True)
    write_prediction_tables(out_dir / "segments.csv", out_dir / "tracks.csv", ds.labels, seg_rows, track_rows)
    atomic_write_csv(out_dir / "skipped.csv", ["path", "reason"], [list(s) for s in ds.skipped()])
    metrics.update(data=str(data), run=str(run_dir), n_skipped=len(ds.skipped()), unknown_classes=unknown)
    atomic_write_json(out_dir / "metrics.json", metrics)
    plot_confusion(np.asarray(metrics["confusion"]), ds.labels, out_dir / "confusion_matrix.png",
                   f"Track confusion on {Path(data).name}")
    write_confusion_csv(np.asarray(metrics["confusion"]), ds.labels, out_dir / "confusion_matrix.csv")
    metrics["out"] = str(out_dir)
    return metrics
