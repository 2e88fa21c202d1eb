"""Fitting a linear probe: embeddings of every segment of a prepared store, computed once with the frozen
pretrained network and cached beside the store (keyed by the checkpoint, the segment settings and the rate),
then a head fitted on them (:mod:`earmark.models.probe` holds the member that predicts).
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Recipe, SegmentConfig
from ..data.loader import SegmentTable
from ..data.store import PreparedStore
from ..errors import DatasetError
from ..models.audioset import DEFAULT_MODEL, AudioSetModel, BackboneInfo, model_info
from ..models.probe import MLPHead, ProbeMember, embed_segments, remember
from ..models.registry import create_model
from ..utils.files import atomic_write_json, atomic_write_npy, read_json
from ..utils.progress import progress

log = logging.getLogger(__name__)

EMBED_VERSION = 1
_CHUNK = 256


def embedding_key(info: BackboneInfo, segment: SegmentConfig, sample_rate: int) -> str:
    """Cache key: the checkpoint's sha256, the segment settings and the sample rate."""
    settings = {"version": EMBED_VERSION, "sha256": info.sha256, "sample_rate": sample_rate,
                **segment.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:24]


class SegmentEmbeddings:
    """Embeddings of every segment of a prepared store, computed once and cached in the store's folder."""

    def __init__(self, embeddings: np.ndarray, table: SegmentTable) -> None:
        self.embeddings, self.table = embeddings, table
        self._row = {(int(f), int(s)): r for r, (f, s) in enumerate(zip(table.files, table.starts))}

    def rows(self, table: SegmentTable) -> np.ndarray:
        """Rows of :attr:`embeddings` for the segments of ``table`` (a table of some of the same files)."""
        return np.array([self._row[(int(f), int(s))] for f, s in zip(table.files, table.starts)], dtype=np.int64)

    @classmethod
    def compute(cls, model: AudioSetModel, store: PreparedStore, segment: SegmentConfig, sample_rate: int,
                show_progress: bool = True) -> SegmentEmbeddings:
        """Load the cached embeddings for this checkpoint and segment setting, or compute and cache them."""
        table = SegmentTable.build(store, np.arange(len(store)), segment, sample_rate)
        folder = store.folder / "embeddings"
        key = embedding_key(model_info(model), segment, sample_rate)
        path, meta_path = folder / f"{key}.npy", folder / f"{key}.json"
        if path.is_file() and meta_path.is_file():
            try:
                emb = np.load(path, mmap_mode="r")
                if emb.shape == (len(table), model.embed_dim):
                    log.info("reusing cached embeddings %s", path)
                    emb = np.asarray(emb)
                    for b in range(0, len(table), _CHUNK):
                        rows = np.arange(b, min(b + _CHUNK, len(table)))
                        remember(model.sha256, table.read(store, rows), emb[rows])
                    return cls(emb, table)
            except (OSError, ValueError):
                pass  # damaged: compute again
        started = time.perf_counter()
        emb = np.zeros((len(table), model.embed_dim), dtype=np.float32)
        bar = progress(len(table), f"embedding segments ({model.checkpoint})", unit="seg",
                       disable=not show_progress)
        for b in range(0, len(table), _CHUNK):
            rows = np.arange(b, min(b + _CHUNK, len(table)))
            waves = table.read(store, rows)
            emb[rows] = embed_segments(model, waves, sample_rate)
            remember(model.sha256, waves, emb[rows])
            bar.update(rows.size)
        bar.close()
        seconds = time.perf_counter() - started
        try:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_npy(path, emb)
            atomic_write_json(meta_path, {**model_info(model).as_dict(), "segment": segment.model_dump(mode="json"),
                                          "segments": len(table), "seconds": round(seconds, 2)})
            log.info("embedded %d segments in %.1f s (cached in %s)", len(table), seconds, path)
        except OSError as exc:  # a read-only or full cache: the run goes on, the next one embeds again
            log.warning("embedded %d segments in %.1f s but could not cache them in %s (%s)", len(table), seconds,
                        folder, exc)
        return cls(emb, table)


def check_probe_recipe(recipe: Recipe, model: AudioSetModel) -> None:
    if recipe.audio.sample_rate != model.sample_rate:
        log.info("%s was trained at %d Hz; the run's %d Hz segments are resampled to it before embedding (set "
                 "audio.sample_rate=%d to decode at that rate once, as recipe pretrained-probe does)",
                 model.checkpoint, model.sample_rate, recipe.audio.sample_rate, model.sample_rate)
        if recipe.audio.sample_rate < 2 * 15000:
            log.warning("audio.sample_rate=%d Hz keeps only what is below %d Hz; %s listens up to 15 kHz",
                        recipe.audio.sample_rate, recipe.audio.sample_rate // 2, model.checkpoint)
    if recipe.audio.separation != "none":
        log.info("the probe embeds the separated vocals (audio.separation=%s)", recipe.audio.separation)


def fit_probe(recipe: Recipe, store: PreparedStore, label_index: np.ndarray, train_files: np.ndarray,
              val_files: np.ndarray, folder: Path, seed: int, num_classes: int) -> dict[str, Any]:
    """Fit one probe member on the training segments' (cached) embeddings, score it on validation, save it.

    Returns the member's information (recorded in ``member.json``), like :func:`~.classical.fit_classical`.
    """
    from sklearn.metrics import log_loss

    from ..models.audioset import load_audioset_model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sr = recipe.audio.sample_rate
    backbone = load_audioset_model(recipe.model.pretrained or DEFAULT_MODEL).eval()
    check_probe_recipe(recipe, backbone)
    started = time.perf_counter()
    cache = SegmentEmbeddings.compute(backbone, store, recipe.segment, sr, show_progress=recipe.train.progress)
    embed_seconds = time.perf_counter() - started
    train_table = SegmentTable.build(store, train_files, recipe.segment, sr)
    if len(train_table) == 0:
        raise DatasetError(f"{folder}: no training segments (every training file was skipped or dropped)")
    x = cache.embeddings[cache.rows(train_table)]
    y = np.asarray(label_index, dtype=np.int64)[train_table.files]
    if np.unique(y).size < 2:
        raise DatasetError(f"{folder}: the training side holds only one class; a classifier needs two or more")
    fit_started = time.perf_counter()
    head = create_model(recipe.model.name, num_classes, random_state=seed, **recipe.model.kwargs)
    from ..models.classical import fit_pipeline

    fit_pipeline(head, x, y)
    fit_seconds = time.perf_counter() - fit_started
    member = ProbeMember(backbone, head, num_classes, sr)
    val_table = SegmentTable.build(store, val_files, recipe.segment, sr)
    val_acc = val_loss = None
    if len(val_table):
        vy = np.asarray(label_index, dtype=np.int64)[val_table.files]
        vp = member.head_proba(cache.embeddings[cache.rows(val_table)])
        val_acc = float((vp.argmax(1) == vy).mean())
        val_loss = float(log_loss(vy, np.clip(vp, 1e-7, 1.0), labels=np.arange(num_classes)))
    monitor = recipe.train.monitor if len(val_table) else None
    n_values = member.save(folder, {"model": recipe.model.name, "seed": seed})
    return {
        "seed": seed, "head": type(head).__name__ if isinstance(head, MLPHead) else type(head.steps[-1][1]).__name__,
        "pretrained": model_info(backbone).as_dict(),
        "train_seconds": time.perf_counter() - started, "embed_seconds": embed_seconds, "fit_seconds": fit_seconds,
        "train_segments": len(train_table), "val_segments": len(val_table),
        "monitor": monitor, "best_score": val_loss if monitor == "val_loss" else val_acc,
        "val_accuracy": val_acc, "val_loss": val_loss, "embed_dim": backbone.embed_dim, "parameters": n_values,
    }


def read_cache_info(store_folder: Path) -> list[dict[str, Any]]:
    """What is cached in a store's ``embeddings/`` folder (one entry per checkpoint and segment setting)."""
    return [read_json(p) for p in sorted((Path(store_folder) / "embeddings").glob("*.json"))]
