"""The main job: data in, trained and evaluated run folder out (``earmark train``).

discover -> prepare (decode once, cached) -> split (group-aware) -> for each fold: fit its members, score
its test files (segments, then tracks) -> summary (metrics.json, report.md, plots).
Every step is resumable: a finished member, fold or store is never redone; an interrupted member
resumes from its last checkpoint.
"""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Recipe, load_recipe
from ..data.dataset import Dataset, dataset_folds, load_dataset
from ..data.loader import SegmentTable
from ..data.split import Fold
from ..engines import get_engine
from ..ensemble import vote
from ..errors import DatasetError, RunError
from ..evaluation.scoring import score_tracks, val_accuracy, write_prediction_tables
from ..evaluation.summary import HEADLINE, summarize
from ..inference.members import load_member, member_segment_probs
from ..run import RunFolder
from ..training.members import member_weights, train_members
from ..utils.files import atomic_write_csv, atomic_write_json, atomic_write_npy, read_json

log = logging.getLogger(__name__)


def run_fold(recipe: Recipe, run: RunFolder, ds: Dataset, fold: Fold) -> dict[str, Any]:
    """Train (or reuse) one fold's members and score them on its test files; returns the fold's metrics."""
    folder = run.fold_dir(fold.name)
    done = folder / "metrics.json"
    entries = train_members(recipe, run, ds, fold)
    if done.is_file():
        return read_json(done)
    table = SegmentTable.build(ds.store, fold.test, recipe.segment, recipe.audio.sample_rate)
    if len(table) == 0:
        raise DatasetError(f"fold {fold.name}: no test segments (all test files skipped or shorter than a segment "
                           "with segment.short=drop)")
    members = [load_member(run.path, e, recipe, len(ds.labels), batch_size=recipe.eval.batch_size) for e in entries]
    per_member = member_segment_probs(members, ds, table, recipe)
    weights = member_weights(recipe, entries)
    seg_probs = vote(per_member, recipe.ensemble.voting, weights).astype(np.float32)
    atomic_write_npy(folder / "test_member_probs.npy", per_member)  # ensemble-size reports without retraining
    metrics, seg_rows, track_rows = score_tracks(ds, table, seg_probs, recipe)
    atomic_write_npy(folder / "test_segment_files.npy", table.files)
    write_prediction_tables(folder / "test_segments.csv", folder / "test_tracks.csv", ds.labels, seg_rows,
                            track_rows)
    metrics["val_segment_accuracy"] = val_accuracy(recipe, ds, fold, members, weights)
    metrics["fold"] = fold.name
    metrics["members"] = len(entries)
    metrics["n_train_files"], metrics["n_val_files"] = int(fold.train.size), int(fold.val.size)
    metrics["train_seconds"] = float(sum(read_json(run.path / e.dir / "member.json").get("train_seconds", 0.0)
                                         for e in entries))
    atomic_write_json(done, metrics)
    return metrics


def train(data: str | Path, out: str | Path, recipe: str | Recipe = "default", overrides: list[str] | None = None,
          group: str | None = None, show_progress: bool = True, engine: str | None = None,
          address: str | None = None) -> RunFolder:
    """Train and evaluate on ``data``; write (or finish) the run folder ``out``. Returns the run.

    ``engine`` (``local`` or ``ray``, at ``address``) prepares the data and trains every (fold, member) pair as
    one task there; without it, members train in turn in this process."""
    started = time.perf_counter()
    rec = load_recipe(recipe, overrides) if isinstance(recipe, str) else recipe
    if group:
        rec = rec.model_copy(update={"data": rec.data.model_copy(update={"group": group})})
    from ..training.distributed import follow, is_global_zero

    if not is_global_zero():  # another process of a distributed (DDP) fit: join the fits, write nothing
        follow(data, out, rec)
        return RunFolder(Path(out))
    if rec.model.pretrained:  # a missing checkpoint (offline) fails now, not after decoding the data
        from ..models.weights import resolve_weights

        resolve_weights(rec.model.pretrained)
    run = RunFolder(Path(out))
    run.start(rec, str(data))
    if rec.variants:
        return _train_variants(data, run, rec, show_progress, started, overrides if isinstance(recipe, str) else None)
    eng = get_engine(engine, address) if engine or address else None  # None: members in turn, as always
    ds = load_dataset(data, rec, show_progress=show_progress, engine=eng)
    labels_file = run.file("labels.json")
    if labels_file.is_file() and run.labels() != ds.labels:
        raise RunError(f"{out} was started on data with classes {run.labels()}, not {ds.labels}")
    atomic_write_json(labels_file, ds.labels)
    skipped = ds.skipped()
    atomic_write_csv(run.file("skipped.csv"), ["path", "reason"], [list(s) for s in skipped])
    if skipped:
        log.warning("%d file(s) skipped; see %s", len(skipped), run.file("skipped.csv"))
    folds = dataset_folds(ds, rec)
    _write_splits(run, ds, folds)
    _audit_warnings(ds)
    if eng:  # every member of every fold as one engine task; scoring below finds them finished
        from ..engines.members import train_on_engine

        train_on_engine(eng, rec, run, data, ds, folds, show_progress)
    results = [run_fold(rec, run, ds, fold) for fold in folds]
    entries = []
    for fold in folds:
        entries += train_members(rec, run, ds, fold)  # all finished: only reads member.json
    weights = member_weights(rec, entries)
    entries = [replace(e, weight=w) for e, w in zip(entries, weights)]
    run.write_members(rec.ensemble.voting, entries)
    if len(entries) > len(folds):
        from ..evaluation.ensemble_report import weights_from_members, write_ensemble_report

        truth = {int(i): int(li) for i, li in enumerate(ds.label_index)}
        write_ensemble_report(run.path, [f.name for f in folds], truth, rec.eval.aggregate,
                              weights_from_members(run) if rec.ensemble.weighted else None)
    seconds = time.perf_counter() - started
    summarize(rec, run, ds, folds, results, seconds)
    run.write_info(status="complete", finished=time.strftime("%Y-%m-%dT%H:%M:%S"),
                   folds=[f.name for f in folds], labels=ds.labels, n_members=len(entries),
                   layout=ds.manifest.layout, group_by=ds.manifest.group_by)
    return run


def _write_splits(run: RunFolder, ds: Dataset, folds: list[Fold]) -> None:
    side = {}
    for fold in folds:
        for name, idx in fold.sides().items():
            for i in idx:
                side[(int(i), fold.name)] = name
    rows = []
    for i, it in enumerate(ds.manifest.items):
        rows.append([str(it.path), it.label, it.group, *(side.get((i, f.name), "unused") for f in folds)])
    atomic_write_csv(run.file("splits.csv"), ["path", "label", "group", *(f.name for f in folds)], rows)


def _audit_warnings(ds: Dataset) -> None:
    """Log what ``earmark audit`` would warn about (duplicates across classes or splits, imbalance)."""
    from ..data.audit import quick_warnings

    for w in quick_warnings(ds.manifest, ds.store):
        log.warning("audit: %s", w)


def _train_variants(data: str | Path, run: RunFolder, rec: Recipe, show_progress: bool, started: float,
                    overrides: list[str] | None = None) -> RunFolder:
    """Train every variant as its own run; the parent run points at the best one on validation data."""
    results: dict[str, dict[str, Any]] = {}
    for name in rec.variants:
        log.info("variant %s: %s", name, " ".join(rec.variants[name]) or "(the recipe as is)")
        sub = train(data, run.path / "variants" / name, rec.variant(name, overrides), show_progress=show_progress)
        results[name] = read_json(sub.file("metrics.json"))
    has_val = all(m.get("val_segment_accuracy") is not None for m in results.values())
    key = "val_segment_accuracy" if has_val else "track_accuracy"
    best = max(results, key=lambda n: results[n][key])  # first listed wins ties
    if not has_val:
        log.warning("no validation data: the variant was chosen on test scores (optimistic)")
    metrics = {k: results[best][k] for k in (*HEADLINE, *(f"{h}_std" for h in HEADLINE), "n_folds", "n_skipped")}
    metrics.update(best_variant=best, selected_by=key, variants={
        n: {k: m.get(k) for k in (*HEADLINE, "val_segment_accuracy", "train_seconds", "n_folds")}
        for n, m in results.items()})
    atomic_write_json(run.file("metrics.json"), metrics)
    from ..evaluation.compare import compare_runs

    compare_runs([run.path / "variants" / n for n in rec.variants], out_dir=run.path)
    run.write_info(status="complete", finished=time.strftime("%Y-%m-%dT%H:%M:%S"), best_variant=best,
                   variants=list(rec.variants), wall_seconds=time.perf_counter() - started)
    return run
