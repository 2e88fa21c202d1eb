"""Fitting a classical member on a fold's segments (the models themselves: :mod:`earmark.models.classical`)."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Recipe
from ..data.loader import SegmentTable
from ..data.store import PreparedStore
from ..errors import DatasetError
from ..features.stats import SummaryFeatures, summarize
from ..models.classical import ClassicalMember, fit_pipeline
from ..models.registry import create_model

log = logging.getLogger(__name__)

#: at most this many training segments (a seeded sample) go into one fit: kernel methods grow as n^2
MAX_TRAIN_SEGMENTS = 20000
_READ_CHUNK = 512


def _segment_features(extractor: SummaryFeatures, store: PreparedStore, table: SegmentTable, rows: np.ndarray
                      ) -> np.ndarray:
    parts = [summarize(extractor, table.read(store, rows[b: b + _READ_CHUNK]))
             for b in range(0, rows.size, _READ_CHUNK)]
    return np.concatenate(parts) if parts else np.zeros((0, extractor.n_features))


def fit_classical(recipe: Recipe, store: PreparedStore, label_index: np.ndarray, train_files: np.ndarray,
                  val_files: np.ndarray, folder: Path, seed: int, num_classes: int) -> dict[str, Any]:
    """Fit one classical member on the training segments, score it on the validation segments, save it.

    Returns the member's information (recorded in ``member.json``): seed, training time, segments,
    validation accuracy / log-loss (``best_score`` follows ``train.monitor``) and fitted values.
    """
    from sklearn.metrics import log_loss

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sr = recipe.audio.sample_rate
    extractor = SummaryFeatures.from_config(recipe.features, sr).eval()
    train_table = SegmentTable.build(store, train_files, recipe.segment, sr)
    if len(train_table) == 0:
        raise DatasetError(f"{folder}: no training segments (every training file was skipped or dropped)")
    rows = np.arange(len(train_table))
    if rows.size > MAX_TRAIN_SEGMENTS:
        rows = np.sort(np.random.default_rng(seed).choice(rows.size, MAX_TRAIN_SEGMENTS, replace=False))
        log.info("%s: fitting on a seeded sample of %d of %d training segments", folder, rows.size, len(train_table))
    y = np.asarray(label_index, dtype=np.int64)[train_table.files[rows]]
    if np.unique(y).size < 2:
        raise DatasetError(f"{folder}: the training side holds only one class; a classifier needs two or more")
    started = time.perf_counter()
    x = _segment_features(extractor, store, train_table, rows)
    feature_seconds = time.perf_counter() - started
    if not np.isfinite(x).all():
        raise DatasetError(f"{folder}: summary features are not finite (NaN/Inf samples in the prepared audio?)")
    pipeline = create_model(recipe.model.name, num_classes, random_state=seed, **recipe.model.kwargs)
    fit_pipeline(pipeline, x, y)
    seconds = time.perf_counter() - started
    member = ClassicalMember(pipeline, extractor, num_classes)

    val_table = SegmentTable.build(store, val_files, recipe.segment, sr)
    val_acc = val_loss = None
    if len(val_table):
        vy = np.asarray(label_index, dtype=np.int64)[val_table.files]
        vp = np.concatenate([
            member.predict_proba(val_table.read(store, np.arange(b, min(b + _READ_CHUNK, len(val_table)))))
            for b in range(0, len(val_table), _READ_CHUNK)])
        val_acc = float((vp.argmax(1) == vy).mean())
        val_loss = float(log_loss(vy, np.clip(vp, 1e-7, 1.0), labels=np.arange(num_classes)))
    monitor = recipe.train.monitor if len(val_table) else None
    n_values = member.save(folder, {"model": recipe.model.name, "seed": seed})
    return {
        "seed": seed, "estimator": type(pipeline.steps[-1][1]).__name__,
        "train_seconds": seconds, "feature_seconds": feature_seconds,
        "train_segments": int(rows.size), "val_segments": len(val_table),
        "monitor": monitor, "best_score": val_loss if monitor == "val_loss" else val_acc,
        "val_accuracy": val_acc, "val_loss": val_loss,
        "features": extractor.n_features, "parameters": n_values,
    }
