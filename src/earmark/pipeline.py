"""The main job: data in, trained and evaluated run folder out.

``train``: discover -> prepare (decode once, cached) -> split (group-aware) -> for each fold: fit its
members, score its test files (segments, then tracks) -> summary (metrics.json, report.md, plots).
Every step is resumable: a finished member, fold or store is never redone; an interrupted member
resumes from its last checkpoint.
"""
from __future__ import annotations

import csv
import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import Recipe, load_recipe
from .data.loader import SegmentTable
from .data.manifest import Manifest
from .data.sources import discover
from .data.split import Fold
from .data.store import PreparedStore, prepare_manifest
from .engines import Engine, get_engine
from .engines.members import dataset_folds, train_on_engine
from .ensemble import vote, with_tta
from .errors import ConfigError, DatasetError, RunError
from .evaluation.aggregate import aggregate_by_track
from .evaluation.metrics import classification_scores, mean_std
from .evaluation.plots import (plot_confusion, plot_examples, plot_training_curves, read_training_logs,
                               write_confusion_csv)
from .evaluation.report import write_report
from .inference.members import load_member, save_net
from .models.registry import get_spec
from .run import RunFolder
from .utils.files import atomic_write_json, atomic_write_npy, atomic_write_text, read_json

log = logging.getLogger(__name__)


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
                 engine: Engine | None = None) -> Dataset:
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


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


# ----------------------------------------------------------------------------------------------- members



def fit_member(recipe: Recipe, ds: Dataset, fold: Fold, train: np.ndarray, val: np.ndarray, folder: Path,
               seed: int) -> dict[str, Any]:
    """Train one member into ``folder`` (weights + member files); returns its fit information."""
    spec = get_spec(recipe.model.name)
    num_classes = len(ds.labels)
    if spec.is_deep:
        from .training.fit import fit_network

        teacher = None
        if recipe.distill.teacher:
            from .training.distill import teacher_for_fold

            teacher = teacher_for_fold(recipe, ds, fold)
        result = fit_network(recipe, num_classes, ds.store, ds.label_index, train, val, folder, seed, teacher)
        save_net(result.net, folder / "model.safetensors")
        return {"kind": "net", **result.info}
    if recipe.distill.teacher:
        raise ConfigError(f"distillation trains networks; {recipe.model.name} is a classical model")
    from .models.classical import fit_classical

    return {"kind": "classical", **fit_classical(recipe, ds.store, ds.label_index, train, val, folder, seed,
                                                 num_classes)}


def train_members(recipe: Recipe, run: RunFolder, ds: Dataset, fold: Fold) -> list[dict[str, Any]]:
    """Train (or reuse) every member of one fold; returns their ``members.json`` entries."""
    from .training.members import fit_planned_member, plan_members

    entries = []
    for plan in plan_members(recipe, ds, fold):
        folder = run.member_dir(fold.name, plan.index)
        done = folder / "member.json"
        if not done.is_file():
            fit_planned_member(plan, ds, fold, folder)
        info = read_json(done)
        entries.append({"dir": str(folder.relative_to(run.path)), "kind": info.get("kind", "net"),
                        "model": info.get("model"), "fold": fold.name, "seed": info.get("seed"),
                        "val_score": info.get("best_score"), "weight": 1.0})
    return entries


def member_weights(recipe: Recipe, entries: list[dict[str, Any]]) -> list[float]:
    """Equal weights, or (``ensemble.weighted``) each member's validation accuracy/score."""
    if not recipe.ensemble.weighted:
        return [1.0] * len(entries)
    if all(e.get("val_score") is None for e in entries):
        log.warning("ensemble.weighted=true but the members have no validation score (split.val_size=0): "
                    "they vote with equal weights")
    scores = []
    for e in entries:
        s = e.get("val_score")
        if s is None:
            scores.append(1.0)
        elif recipe.train.monitor == "val_loss":
            scores.append(float(np.exp(-s)))  # lower loss, higher weight
        else:
            scores.append(max(float(s), 1e-6))
    return scores


def member_segment_probs(members: list[Any], ds: Dataset, table: SegmentTable, recipe: Recipe,
                         chunk: int = 1024) -> np.ndarray:
    """Per-member segment probabilities ``(members, n, classes)``, read from the store in chunks."""
    e = recipe.ensemble
    out = []
    for m in members:
        parts = []
        for b in range(0, len(table), chunk):
            waves = table.read(ds.store, np.arange(b, min(b + chunk, len(table))))
            parts.append(with_tta(m.predict_proba, waves, e.tta, e.tta_shift))
        out.append(np.concatenate(parts) if parts else np.zeros((0, len(ds.labels))))
    return np.stack(out).astype(np.float32)


# ------------------------------------------------------------------------------------------------- scoring


def score_tracks(ds: Dataset, table: SegmentTable, seg_probs: np.ndarray, recipe: Recipe
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


def run_fold(recipe: Recipe, run: RunFolder, ds: Dataset, fold: Fold) -> dict[str, Any]:
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
    header_probs = [f"p_{lbl}" for lbl in ds.labels]
    _write_csv(folder / "test_segments.csv", ["path", "start_s", "end_s", "label", "predicted", *header_probs],
               seg_rows)
    _write_csv(folder / "test_tracks.csv", ["path", "label", "predicted", *header_probs], track_rows)
    metrics["val_segment_accuracy"] = _val_accuracy(recipe, ds, fold, members, weights)
    metrics["fold"] = fold.name
    metrics["members"] = len(entries)
    metrics["n_train_files"], metrics["n_val_files"] = int(fold.train.size), int(fold.val.size)
    metrics["train_seconds"] = float(sum(read_json(run.path / e["dir"] / "member.json").get("train_seconds", 0.0)
                                         for e in entries))
    atomic_write_json(done, metrics)
    return metrics


def _val_accuracy(recipe: Recipe, ds: Dataset, fold: Fold, members: list[Any], weights: list[float]
                  ) -> float | None:
    """Segment accuracy of the fold's ensemble on its validation files (used to choose between variants)."""
    table = SegmentTable.build(ds.store, fold.val, recipe.segment, recipe.audio.sample_rate)
    if len(table) == 0:
        return None
    probs = vote(member_segment_probs(members, ds, table, recipe), recipe.ensemble.voting, weights)
    return float((probs.argmax(1) == ds.label_index[table.files]).mean())


# ----------------------------------------------------------------------------------------------- summary

_HEADLINE = ("segment_accuracy", "segment_macro_f1", "track_accuracy", "track_macro_f1")


def summarize(recipe: Recipe, run: RunFolder, ds: Dataset, folds: list[Fold], results: list[dict[str, Any]],
              seconds: float) -> dict[str, Any]:
    labels = ds.labels
    metrics: dict[str, Any] = {}
    for key in _HEADLINE:
        m, s = mean_std([r[key] for r in results])
        metrics[key], metrics[f"{key}_std"] = m, s
    confusion = np.sum([np.asarray(r["confusion"]) for r in results], axis=0)
    pooled = classification_scores(*_expand_confusion(confusion), labels)
    metrics.update({
        "folds": {r["fold"]: {k: r.get(k) for k in (*_HEADLINE, "val_segment_accuracy", "n_test_tracks",
                                                    "n_test_segments", "train_seconds")} for r in results},
        "val_segment_accuracy": _mean_or_none([r.get("val_segment_accuracy") for r in results]),
        "n_folds": len(results), "split_method": _split_method(recipe, ds.manifest),
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
    _write_csv(run.file("test_predictions.csv"), ["fold", *header], rows)
    _plot_examples(recipe, ds, folds[0], run.file("spectrograms.png"))
    write_report(run, recipe, ds, metrics)
    return metrics


def _plot_examples(recipe: Recipe, ds: Dataset, fold: Fold, path: Path) -> None:
    """One training segment per class through the run's filter bank (before normalisation), as a picture."""
    import torch

    from .config import FeatureConfig
    from .models.net import build_frontend

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


def _split_method(recipe: Recipe, manifest: Manifest) -> str:
    m = recipe.split.method
    if m == "auto":
        m = "folds" if manifest.has_folds else "split" if manifest.has_split else "holdout"
    return m


# ------------------------------------------------------------------------------------------------ public


def train(data: str | Path, out: str | Path, recipe: str | Recipe = "default", overrides: list[str] | None = None,
          group: str | None = None, show_progress: bool = True, engine: str | None = None,
          address: str | None = None) -> RunFolder:
    """Train and evaluate on ``data``; write (or finish) the run folder ``out``. Returns the run."""
    started = time.perf_counter()
    rec = load_recipe(recipe, overrides) if isinstance(recipe, str) else recipe
    if group:
        rec = rec.model_copy(update={"data": rec.data.model_copy(update={"group": group})})
    from .training.distributed import follow, is_global_zero

    if not is_global_zero():  # another process of a distributed (DDP) fit: join the fits, write nothing
        follow(data, out, rec)
        return RunFolder(Path(out))
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
    _write_csv(run.file("skipped.csv"), ["path", "reason"], [list(s) for s in skipped])
    if skipped:
        log.warning("%d file(s) skipped; see %s", len(skipped), run.file("skipped.csv"))
    folds = dataset_folds(rec, ds)
    _write_splits(run, ds, folds)
    _audit_warnings(ds)
    if eng:  # every member of every fold as one engine task; scoring below finds them finished
        train_on_engine(eng, rec, run, data, ds, folds, show_progress)
    results = [run_fold(rec, run, ds, fold) for fold in folds]
    entries = []
    for fold in folds:
        entries += train_members(rec, run, ds, fold)  # all finished: only reads member.json
    weights = member_weights(rec, entries)
    for e, w in zip(entries, weights):
        e["weight"] = w
    atomic_write_json(run.file("members.json"), {"voting": rec.ensemble.voting, "members": entries})
    if len(entries) > len(folds):
        from .evaluation.ensemble_report import weights_from_members, write_ensemble_report

        truth = {int(i): int(li) for i, li in enumerate(ds.label_index)}
        write_ensemble_report(run.path, [f.name for f in folds], truth, rec.eval.aggregate,
                              weights_from_members(run.path) if rec.ensemble.weighted else None)
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
    _write_csv(run.file("splits.csv"), ["path", "label", "group", *(f.name for f in folds)], rows)


def _audit_warnings(ds: Dataset) -> None:
    """Log what ``earmark audit`` would warn about (duplicates across classes or splits, imbalance)."""
    from .data.audit import quick_warnings

    for w in quick_warnings(ds.manifest, ds.store):
        log.warning("audit: %s", w)


def evaluate(run_dir: str | Path, data: str | Path, out: str | Path | None = None,
             show_progress: bool = True) -> dict[str, Any]:
    """Score a finished run on a labeled dataset; writes metrics and plots to ``out``."""
    from .inference.predictor import Predictor

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
    header_probs = [f"p_{lbl}" for lbl in ds.labels]
    _write_csv(out_dir / "segments.csv", ["path", "start_s", "end_s", "label", "predicted", *header_probs], seg_rows)
    _write_csv(out_dir / "tracks.csv", ["path", "label", "predicted", *header_probs], track_rows)
    _write_csv(out_dir / "skipped.csv", ["path", "reason"], [list(s) for s in ds.skipped()])
    metrics.update(data=str(data), run=str(run_dir), n_skipped=len(ds.skipped()), unknown_classes=unknown)
    atomic_write_json(out_dir / "metrics.json", metrics)
    plot_confusion(np.asarray(metrics["confusion"]), ds.labels, out_dir / "confusion_matrix.png",
                   f"Track confusion on {Path(data).name}")
    write_confusion_csv(np.asarray(metrics["confusion"]), ds.labels, out_dir / "confusion_matrix.csv")
    metrics["out"] = str(out_dir)
    return metrics


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
    metrics = {k: results[best][k] for k in (*_HEADLINE, *(f"{h}_std" for h in _HEADLINE), "n_folds", "n_skipped")}
    metrics.update(best_variant=best, selected_by=key, variants={
        n: {k: m.get(k) for k in (*_HEADLINE, "val_segment_accuracy", "train_seconds", "n_folds")}
        for n, m in results.items()})
    atomic_write_json(run.file("metrics.json"), metrics)
    from .evaluation.compare import compare_runs

    compare_runs([run.path / "variants" / n for n in rec.variants], out_dir=run.path)
    run.write_info(status="complete", finished=time.strftime("%Y-%m-%dT%H:%M:%S"), best_variant=best,
                   variants=list(rec.variants), wall_seconds=time.perf_counter() - started)
    return run
