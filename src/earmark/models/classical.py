"""Classical baselines: scikit-learn pipelines (standardise, then a classifier) on summary features.

Each segment becomes one vector of MFCC/log-mel statistics and spectral descriptors
(:class:`~earmark.features.stats.SummaryFeatures`); the pipelines are ``StandardScaler`` followed by
logistic regression, k nearest neighbours, Gaussian naive Bayes or an RBF SVM, as the genre systems
compared them with deep models. They train from the same command and write the same run folder; the fitted
pipeline is saved as safetensors + JSON (:mod:`.sklearn_state`), never pickled. Fitting one on a run's
segments is :func:`earmark.training.classical.fit_classical`.

    >>> pipe = create_model("svm", num_classes=10)      # a scikit-learn Pipeline
    >>> member = ClassicalMember.load(folder, recipe)   # waveforms (n, samples) -> (n, classes)
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Recipe
from ..errors import RunError
from ..features.stats import SummaryFeatures, SummaryTransformer, summarize
from .registry import register_model
from .sklearn_state import load_estimator, save_estimator

#: file of a classical member inside its folder
MODEL_FILE = "classical.safetensors"


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


def waveform_pipeline(extractor: SummaryFeatures, pipeline: Any) -> Any:
    """One scikit-learn Pipeline from waveforms ``(n, samples)`` to ``predict_proba``: the summary features
    (:class:`~earmark.features.stats.SummaryTransformer`), then the steps of ``pipeline`` (shared, not copied)."""
    from sklearn.pipeline import Pipeline

    return Pipeline([("features", SummaryTransformer(extractor)), *pipeline.steps])


@dataclass
class ClassicalMember:
    """A fitted pipeline as an ensemble member: waveforms ``(n, samples)`` -> probabilities ``(n, classes)``.

    ``pipeline``: the fitted steps on summary features (scaling, classifier), as saved; ``model``: the whole
    Pipeline from waveforms (:func:`waveform_pipeline`) that predicts.
    """

    pipeline: Any
    extractor: SummaryFeatures
    num_classes: int
    weight: float = 1.0
    name: str = ""
    model: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.model = waveform_pipeline(self.extractor, self.pipeline)

    def features(self, waves: np.ndarray) -> np.ndarray:
        """Summary features ``(n, n_features)`` of waveform segments ``(n, samples)``."""
        return summarize(self.extractor, waves)

    def predict_proba(self, waves: np.ndarray) -> np.ndarray:
        n = waves.shape[0]
        out = np.zeros((n, self.num_classes), dtype=np.float32)
        if n == 0:
            return out
        probs = self.model.predict_proba(waves)
        out[:, np.asarray(self.model.classes_, dtype=np.int64)] = probs  # classes absent in training stay 0
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
