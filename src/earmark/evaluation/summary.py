"""A finished run's summary: pooled metrics over folds, plots, the prediction table and the report."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import Recipe
from ..data.dataset import Dataset, split_method
from ..data.split import Fold
from ..utils.files import atomic_write_csv, atomic_write_json
from .metrics import classification_scores, mean_std
from .plots import plot_confusion, plot_examples, plot_training_curves, read_training_logs, write_confusion_csv
from .report import write_report

if TYPE_CHECKING:  # pragma: no cover
    from ..run import RunFolder

#: the four scores every run reports (mean and standard deviation over folds)
HEADLINE = ("segment_accuracy", "segment_macro_f1", "track_accuracy", "track_macro_f1")


def summarize(recipe: Recipe, run: "RunFolder", ds: Dataset, folds: list[Fold], results: list[dict[str, Any]],
              seconds: float) -> dict[str, Any]:
    labels = ds.labels
    metrics: dict[str, Any] = {}
    for key in HEADLINE:
        m, s = mean_std([r[key] for r in results])
        metrics[key], metrics[f"{key}_std"] = m, s
    confusion = np.sum([np.asarray(r["confusion"]) for r in results], axis=0)
    pooled = classification_scores(*_expand_confusion(confusion), labels)
    metrics.update({
        "folds": {r["fold"]: {k: r.get(k) for k in (*HEADLINE, "val_segment_accuracy", "n_test_tracks",
                                                    "n_test_segments", "train_seconds")} for r in results},
        "val_segment_accuracy": _mean_or_none([r.get("val_segment_accuracy") for r in results]),
        "n_folds": len(results), "split_method": split_method(recipe, ds.manifest),
        "aggregate": recipe.eval.aggregate, "labels": labels,
        "per_class": pooled["per_class"], "confusion": confusion.tolist(),
        "n_files": len(ds.manifest.items) + len(ds.manifest.missing), "n_skipped": len(ds.skipped()),
        "train_seconds": float(sum(r.get("train_seconds", 0.0) for r in results)), "wall_seconds": seconds,
    })
    atomic_write_json(run.file("metrics.json"), metrics)
    plot_confusion(confusion, labels, run.file("confusion_matrix.png"),
                   f"Track confusion ({recipe.model.name}, {len(results)} fold{'s' * (len(results) > 1)})")
    write_confusion_csv(confusion, labels, run.file("confusion_matrix.csv"))
    curves = {}
    for fold in folds:
        for logs in sorted(run.fold_dir(fold.name).glob("members/*/logs/csv")):
            curves[f"{fold.name}/m{logs.parts[-3]}"] = read_training_logs(logs)
    if curves:
        plot_training_curves(curves, run.file("training_curves.png"))
    rows = []
    for fold in folds:
        with open(run.fold_dir(fold.name) / "test_tracks.csv", newline="") as f:
            reader = csv.reader(f)
            header = next(reader)
            rows += [[fold.name, *r] for r in reader]
    atomic_write_csv(run.file("test_predictions.csv"), ["fold", *header], rows)
    _plot_examples(recipe, ds, folds[0], run.file("spectrograms.png"))
    write_report(run, recipe, ds, metrics)
    return metrics


def _plot_examples(recipe: Recipe, ds: Dataset, fold: Fold, path: Path) -> None:
    """One training segment per class through the run's filter bank (before normalisation), as a picture."""
    import torch

    from ..config import FeatureConfig
    from ..data.loader import SegmentTable
    from ..features.frontend import build_frontend

    feats = recipe.features if recipe.features.kind != "waveform" else FeatureConfig(
        f_max=min(8000.0, recipe.audio.sample_rate / 2))
    frontend = build_frontend(feats, recipe.audio.sample_rate)
    table = SegmentTable.build(ds.store, fold.train, recipe.segment, recipe.audio.sample_rate)
    first: dict[int, int] = {}
    for row, f in enumerate(table.files):
        first.setdefault(int(ds.label_index[f]), row)
    classes = sorted(first)
    if not classes:
        return
    with torch.no_grad():
        out = frontend(torch.from_numpy(table.read(ds.store, [first[c] for c in classes])))[:, 0].numpy()
    kind = {"logmel": "log-mel", "mfcc": "MFCC"}[feats.kind]
    plot_examples(list(out), [ds.labels[c] for c in classes], path, feats.hop_ms / 1000,
                  f"{kind} of one training segment per class")


def _mean_or_none(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _expand_confusion(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t, p = [], []
    for i, row in enumerate(confusion):
        for j, n in enumerate(row):
            t += [i] * int(n)
            p += [j] * int(n)
    return np.array(t, dtype=np.int64), np.array(p, dtype=np.int64)
