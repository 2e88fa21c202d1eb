"""Classical baselines: scikit-learn pipelines (standardise, then a classifier) on summary features.

Each segment becomes one vector of MFCC/log-mel statistics and spectral descriptors
(:class:`~earmark.features.stats.SummaryFeatures`); the pipelines are ``StandardScaler`` followed by
logistic regression, k nearest neighbours, Gaussian naive Bayes or an RBF SVM, as the genre systems
compared them with deep models. They train from the same command and write the same run folder; the fitted
pipeline is saved as safetensors + JSON (:mod:`.sklearn_state`), never pickled.

    >>> pipe = create_model("svm", num_classes=10)      # a scikit-learn Pipeline
    >>> member = ClassicalMember.load(folder, recipe)   # waveforms (n, samples) -> (n, classes)
"""
from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Recipe
from ..data.loader import SegmentTable
from ..data.store import PreparedStore
from ..errors import DatasetError, RunError
from ..features.stats import SummaryFeatures, summarize
from .registry import create_model, register_model
from .sklearn_state import load_estimator, save_estimator

log = logging.getLogger(__name__)

#: file of a classical member inside its folder
MODEL_FILE = "classical.safetensors"
#: at most this many training segments (a seeded sample) go into one fit: kernel methods grow as n^2
MAX_TRAIN_SEGMENTS = 20000
_READ_CHUNK = 512


def _pipeline(estimator: Any) -> Any:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline([("scale", StandardScaler()), ("model", estimator)])


@register_model(family="classical", input="summary")
def logreg(num_classes: int, C: float = 1.0, max_iter: int = 5000, random_state: int = 0) -> Any:
    """Logistic regression (multinomial, L2, lbfgs) on standardised summary features."""
    from sklearn.linear_model import LogisticRegression

    return _pipeline(LogisticRegression(C=C, max_iter=max_iter, random_state=random_state))


@register_model(family="classical", input="summary")
def knn(num_classes: int, n_neighbors: int = 5, weights: str = "distance", random_state: int = 0) -> Any:
    """k nearest neighbours (distance-weighted, brute force) on standardised summary features."""
    from sklearn.neighbors import KNeighborsClassifier

    return _pipeline(KNeighborsClassifier(n_neighbors=n_neighbors, weights=weights, algorithm="brute"))


@register_model(family="classical", input="summary")
def gnb(num_classes: int, var_smoothing: float = 1e-9, random_state: int = 0) -> Any:
    """Gaussian naive Bayes on standardised summary features."""
    from sklearn.naive_bayes import GaussianNB

    return _pipeline(GaussianNB(var_smoothing=var_smoothing))


@register_model(family="classical", input="summary")
def svm(num_classes: int, C: float = 10.0, gamma: str | float = "scale", random_state: int = 0) -> Any:
    """RBF support vector machine with probability outputs (Platt scaling) on standardised summary features."""
    from sklearn.svm import SVC

    return _pipeline(SVC(C=C, kernel="rbf", gamma=gamma, probability=True, random_state=random_state))


def fit_pipeline(pipeline: Any, x: np.ndarray, y: np.ndarray) -> Any:
    """``pipeline.fit(x, y)`` on features ``(n, n_features)`` and labels ``(n,)``."""
    with warnings.catch_warnings():
        # scikit-learn 1.9 deprecates SVC(probability=True) (removal planned for 1.11; constraints pin 1.9).
        warnings.filterwarnings("ignore", message=".*probability.*deprecated.*", category=FutureWarning)
        return pipeline.fit(x, y)


@dataclass
class ClassicalMember:
    """A fitted pipeline as an ensemble member: waveforms ``(n, samples)`` -> probabilities ``(n, classes)``."""

    pipeline: Any
    extractor: SummaryFeatures
    num_classes: int
    weight: float = 1.0
    name: str = ""

    def features(self, waves: np.ndarray) -> np.ndarray:
        """Summary features ``(n, n_features)`` of waveform segments ``(n, samples)``."""
        return summarize(self.extractor, waves)

    def predict_proba(self, waves: np.ndarray) -> np.ndarray:
        n = waves.shape[0]
        out = np.zeros((n, self.num_classes), dtype=np.float32)
        if n == 0:
            return out
        probs = self.pipeline.predict_proba(self.features(waves))
        out[:, np.asarray(self.pipeline.classes_, dtype=np.int64)] = probs  # classes absent in training stay 0
        return out

    def save(self, folder: Path, extra: dict[str, Any] | None = None) -> int:
        """Write the pipeline to ``folder/classical.safetensors``; returns the number of fitted values."""
        return save_estimator(self.pipeline, Path(folder) / MODEL_FILE,
                              {"num_classes": self.num_classes, "n_features": self.extractor.n_features,
                               **(extra or {})})

    @classmethod
    def load(cls, folder: Path, recipe: Recipe, weight: float = 1.0, name: str = "") -> "ClassicalMember":
        """The member saved in ``folder``, with the feature extractor of ``recipe``."""
        pipeline, extra = load_estimator(Path(folder) / MODEL_FILE)
        extractor = SummaryFeatures.from_config(recipe.features, recipe.audio.sample_rate).eval()
        if extra.get("n_features") not in (None, extractor.n_features):
            raise RunError(f"{folder}: the model was fitted on {extra['n_features']} features, but the run's feature "
                           f"settings give {extractor.n_features}")
        return cls(pipeline, extractor, int(extra["num_classes"]), weight, name)


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
        vp = np.concatenate([member.predict_proba(val_table.read(store, np.arange(b, min(b + _READ_CHUNK, len(val_table)))))
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
