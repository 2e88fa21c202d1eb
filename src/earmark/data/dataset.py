"""A discovered, prepared dataset, and the one way its folds are computed.

Rank 0 of a training job and the follower ranks of a distributed (DDP) fit both call
:func:`dataset_folds`, so they walk the same folds in the same order.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..config import Recipe
from ..errors import DatasetError
from .manifest import Manifest
from .sources import discover
from .split import Fold, make_folds
from .store import PreparedStore, prepare_manifest

if TYPE_CHECKING:  # pragma: no cover
    from ..engines import Engine


@dataclass
class Dataset:
    """A discovered, prepared dataset: manifest rows aligned with store files."""

    manifest: Manifest
    store: PreparedStore
    labels: list[str]
    label_index: np.ndarray  # per manifest item; -1 for labels the run does not know

    @property
    def usable(self) -> np.ndarray:
        return np.flatnonzero(self.store.ok & (self.label_index >= 0))

    def skipped(self) -> list[tuple[str, str]]:
        return list(self.manifest.missing) + self.store.skipped()


def load_dataset(data: str | Path, recipe: Recipe, labels: list[str] | None = None, show_progress: bool = True,
                 engine: "Engine | None" = None) -> Dataset:
    """Discover ``data`` and decode it into the prepared store (cached, resumable), on ``engine`` (None: here)."""
    manifest = discover(data, group=recipe.data.group)
    if recipe.data.max_files_per_class:
        manifest = manifest.limit_per_class(recipe.data.max_files_per_class, recipe.seed)
    labels = labels or manifest.labels
    if len(labels) < 2:
        raise DatasetError(f"{data}: found only one class ({labels[0]!r}); a classifier needs at least two")
    lookup = {lbl: i for i, lbl in enumerate(labels)}
    label_index = np.array([lookup.get(it.label, -1) for it in manifest.items], dtype=np.int64)
    store = prepare_manifest(manifest, recipe.audio, recipe.data.cache_dir, recipe.data.workers, show_progress,
                             engine)
    return Dataset(manifest, store, labels, label_index)


def dataset_folds(ds: Dataset, recipe: Recipe) -> list[Fold]:
    """The run's folds over the usable files, as indices into ``ds.manifest.items``."""
    usable = ds.usable
    folds = make_folds(ds.manifest.subset(usable.tolist()), recipe.split, recipe.split_seed)
    return [Fold(f.name, usable[f.train], usable[f.val], usable[f.test]) for f in folds]


def split_method(recipe: Recipe, manifest: Manifest) -> str:
    """The split method a run used (``auto`` resolved from the layout)."""
    m = recipe.split.method
    if m == "auto":
        m = "folds" if manifest.has_folds else "split" if manifest.has_split else "holdout"
    return m
