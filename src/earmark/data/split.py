"""Group-aware, stratified splits: every file of one group (track, speaker, source) on one side.

Scores are only honest if no group is on two sides; :func:`check_no_leak` refuses a split that breaks
this, whatever produced it (a seeded split, k folds, or folds and splits predefined in the data).
"""
from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

from ..config import SplitConfig
from ..errors import DatasetError
from .manifest import Manifest

log = logging.getLogger(__name__)


@dataclass
class Fold:
    """Item indices of one train/validation/test partition."""

    name: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def sides(self) -> dict[str, np.ndarray]:
        return {"train": self.train, "val": self.val, "test": self.test}


def _groups_by_label(labels: list[str], groups: list[str], idx: np.ndarray) -> dict[str, Counter]:
    counts: dict[str, Counter] = defaultdict(Counter)
    for i in idx:
        counts[groups[i]][labels[i]] += 1
    return counts


def stratified_group_holdout(
    labels: list[str], groups: list[str], idx: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``idx`` into (kept, held_out) with about ``fraction`` of each class held out, whole groups only.

    Groups are visited in a seeded random order and held out when that brings the held-out class counts
    closer to their targets. With one file per group the class proportions are exact (up to rounding).
    A class with a single group stays on the kept side (it could not be on both).
    """
    idx = np.asarray(idx, dtype=np.int64)
    if fraction <= 0 or idx.size == 0:
        return idx, np.zeros(0, dtype=np.int64)
    per_group = _groups_by_label(labels, groups, idx)
    class_totals: Counter = Counter(labels[i] for i in idx)
    class_groups: Counter = Counter()
    for counts in per_group.values():
        class_groups.update(counts.keys())
    target = {c: fraction * n for c, n in class_totals.items()}
    held: Counter = Counter()
    rng = np.random.default_rng(seed)
    names = sorted(per_group)
    order = rng.permutation(len(names))
    chosen: set[str] = set()
    for k in order:
        g = names[k]
        counts = per_group[g]
        if any(class_groups[c] < 2 for c in counts):
            continue
        before = sum((held[c] - target[c]) ** 2 for c in counts)
        after = sum((held[c] + n - target[c]) ** 2 for c, n in counts.items())
        if after < before:
            chosen.add(g)
            held.update(counts)
    mask = np.array([groups[i] in chosen for i in idx], dtype=bool)
    return idx[~mask], idx[mask]


def stratified_group_kfold(labels: list[str], groups: list[str], idx: np.ndarray, k: int, seed: int
                           ) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` stratified folds over the items ``idx``, whole groups only: ``[(train, held_out), ...]``."""
    from sklearn.model_selection import StratifiedGroupKFold

    idx = np.asarray(idx, dtype=np.int64)
    sub_labels = [labels[i] for i in idx]
    sub_groups = [groups[i] for i in idx]
    n_groups = len(set(sub_groups))
    if n_groups < k:
        raise DatasetError(f"{k} folds need at least {k} groups, the data has {n_groups}")
    skf = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(idx[tr], idx[te]) for tr, te in skf.split(idx, sub_labels, sub_groups)]


def _carve_val(manifest: Manifest, train: np.ndarray, cfg: SplitConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    labels = [it.label for it in manifest.items]
    groups = [it.group for it in manifest.items]
    return stratified_group_holdout(labels, groups, train, cfg.val_size, seed + 1)


def _sort_key(value: str) -> tuple[int, object]:
    return (0, int(value)) if value.lstrip("-").isdigit() else (1, value)


def make_folds(manifest: Manifest, cfg: SplitConfig, seed: int) -> list[Fold]:
    """The train/val/test partitions a run trains and scores on (one for a holdout, k for CV)."""
    n = len(manifest.items)
    labels = [it.label for it in manifest.items]
    groups = [it.group for it in manifest.items]
    everything = np.arange(n, dtype=np.int64)
    method = cfg.method
    if method == "auto":
        method = "folds" if manifest.has_folds else "split" if manifest.has_split else "holdout"
    folds: list[Fold] = []
    if method == "holdout":
        train, test = stratified_group_holdout(labels, groups, everything, cfg.test_size, seed)
        train, val = _carve_val(manifest, train, cfg, seed)
        folds.append(Fold("holdout", train, val, test))
    elif method == "split":
        if not manifest.has_split:
            raise DatasetError("split.method=split needs a split column (train/val/test) in the manifest")
        sides = np.array([it.split or "train" for it in manifest.items])
        train, val, test = (everything[sides == s] for s in ("train", "val", "test"))
        if test.size == 0:
            raise DatasetError("the split column marks no file as test")
        if val.size == 0:
            train, val = _carve_val(manifest, train, cfg, seed)
        folds.append(Fold("split", train, val, test))
    elif method == "folds":
        if not manifest.has_folds:
            raise DatasetError("split.method=folds needs a fold column in the manifest")
        values = np.array([str(it.fold) for it in manifest.items])
        for v in sorted(set(values.tolist()), key=_sort_key):
            rest = everything[values != v]
            train, val = _carve_val(manifest, rest, cfg, seed)
            folds.append(Fold(f"fold{v}", train, val, everything[values == v]))
    elif method == "kfold":
        for k, (rest, test) in enumerate(stratified_group_kfold(labels, groups, everything, cfg.folds, seed)):
            train, val = _carve_val(manifest, rest, cfg, seed)
            folds.append(Fold(f"fold{k + 1}", train, val, test))
    elif method == "logo":
        unique = sorted(set(groups))
        if len(unique) < 2:
            raise DatasetError("split.method=logo (leave one group out) needs at least 2 groups; "
                               "name a group column with --group")
        garr = np.array(groups)
        for g in unique:
            rest = everything[garr != g]
            train, val = _carve_val(manifest, rest, cfg, seed)
            folds.append(Fold(g.split("=", 1)[-1], train, val, everything[garr == g]))
    else:  # pragma: no cover - the config validates the method
        raise DatasetError(f"unknown split method {method!r}")
    if cfg.max_folds is not None:
        folds = folds[: cfg.max_folds]
    for fold in folds:
        check_no_leak(manifest, fold)
        _warn_missing_classes(manifest, fold)
    return folds


def check_no_leak(manifest: Manifest, fold: Fold) -> None:
    """Refuse a partition in which one group has files on two sides."""
    side_of: dict[str, str] = {}
    for side, idx in fold.sides().items():
        for i in idx:
            g = manifest.items[int(i)].group
            other = side_of.setdefault(g, side)
            if other != side:
                raise DatasetError(
                    f"split {fold.name!r} leaks: group {g!r} ({manifest.group_by}) has files in both {other} "
                    f"and {side} (e.g. {manifest.items[int(i)].path}). Scores would be inflated. Use a split "
                    "that respects groups (split.method=kfold or logo), or fix the fold/split column."
                )
    if fold.train.size == 0 or fold.test.size == 0:
        raise DatasetError(f"split {fold.name!r} has an empty {'train' if fold.train.size == 0 else 'test'} side")


def _warn_missing_classes(manifest: Manifest, fold: Fold) -> None:
    train_labels = {manifest.items[int(i)].label for i in fold.train}
    missing = sorted({manifest.items[int(i)].label for i in fold.test} - train_labels)
    if missing:
        log.warning("split %s: classes %s are in the test side but not in training", fold.name, missing)
