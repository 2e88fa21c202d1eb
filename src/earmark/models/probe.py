"""Linear probe: a frozen pretrained AudioSet network's embeddings, then a small fitted head.

    earmark train data/ --recipe pretrained-probe                  # mn04_as + logistic regression
    earmark train data/ --set model.name=probe_mlp --set model.pretrained=mn04_as

Every segment of the prepared store is embedded once with the frozen network (batched, no gradients)
and the embeddings are cached inside the store's folder, keyed by the checkpoint's sha256 and the segment
settings, so the next fold, member or run on the same data reuses them (segments of a run at another rate
than the network's 32 kHz are resampled to it first; ``audio.sample_rate=32000``, as the recipe sets,
decodes at that rate once). The head is fitted on the training segments' embeddings: ``probe`` is a
standardised multinomial logistic regression (scikit-learn), ``probe_mlp`` a one-hidden-layer MLP
(PyTorch, full-batch AdamW). Seconds on a CPU once the embeddings exist.

A member folder is self-contained: ``backbone.safetensors`` (the network's weights, with the checkpoint
name, sha256 and width as metadata) and ``head.safetensors`` (the head; no pickle), so predicting never
needs the weights folder. ONNX export refuses probe members, as it does classical ones.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..config import Recipe, SegmentConfig
from ..data.loader import SegmentTable
from ..data.store import PreparedStore
from ..errors import DatasetError, RunError
from ..utils.files import atomic_write, atomic_write_json, atomic_write_npy, read_json
from ..utils.progress import progress
from .audioset import DEFAULT_MODEL, AudioSetModel, BackboneInfo, build_audioset_model, model_info
from .registry import create_model, register_model
from .sklearn_state import load_estimator, save_estimator

log = logging.getLogger(__name__)

BACKBONE_FILE = "backbone.safetensors"
HEAD_FILE = "head.safetensors"
#: bump when the way embeddings are computed changes (invalidates every cache)
EMBED_VERSION = 1
_CHUNK = 256


# ------------------------------------------------------------------------------------------------ heads


@register_model(family="probe", input="waveform")
def probe(num_classes: int, C: float = 1.0, max_iter: int = 5000, random_state: int = 0) -> Any:
    """Linear probe: logistic regression on standardised embeddings of a frozen pretrained network."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline([("scale", StandardScaler()),
                     ("model", LogisticRegression(C=C, max_iter=max_iter, random_state=random_state))])


@register_model(family="probe", input="waveform")
def probe_mlp(num_classes: int, hidden: int = 256, dropout: float = 0.3, epochs: int = 300, lr: float = 1e-3,
              weight_decay: float = 1e-2, random_state: int = 0) -> MLPHead:
    """Probe with a small MLP head (one hidden layer) on embeddings of a frozen pretrained network."""
    return MLPHead(num_classes, hidden, dropout, epochs, lr, weight_decay, random_state)


class MLPHead:
    """Standardise, ``Linear -> ReLU -> Dropout -> Linear``, trained full-batch with AdamW (a few seconds).

    Same interface as a scikit-learn classifier: ``fit(x, y)``, ``predict_proba(x)``, ``classes_``.
    """

    def __init__(self, num_classes: int, hidden: int = 256, dropout: float = 0.3, epochs: int = 300,
                 lr: float = 1e-3, weight_decay: float = 1e-2, random_state: int = 0) -> None:
        self.num_classes, self.hidden, self.dropout = int(num_classes), int(hidden), float(dropout)
        self.epochs, self.lr, self.weight_decay, self.random_state = int(epochs), float(lr), float(weight_decay), \
            int(random_state)
        self.classes_ = np.arange(self.num_classes)
        self.net: nn.Sequential | None = None
        self.mean = self.std = torch.zeros(0)

    def _build(self, dim: int) -> nn.Sequential:
        return nn.Sequential(nn.Linear(dim, self.hidden), nn.ReLU(), nn.Dropout(self.dropout),
                             nn.Linear(self.hidden, self.num_classes))

    def fit(self, x: np.ndarray, y: np.ndarray) -> MLPHead:
        torch.manual_seed(self.random_state)
        xt = torch.from_numpy(np.asarray(x, dtype=np.float32))
        yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
        self.mean, self.std = xt.mean(0), xt.std(0).clamp_min(1e-5)
        xt = (xt - self.mean) / self.std
        self.net = self._build(xt.shape[1])
        opt = torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        self.net.train()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny steps: a second thread only adds synchronisation (30x slower when busy)
        try:
            for _ in range(self.epochs):
                opt.zero_grad()
                nn.functional.cross_entropy(self.net(xt), yt).backward()
                opt.step()
        finally:
            torch.set_num_threads(threads)
        self.net.eval()
        return self

    @torch.inference_mode()
    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        if self.net is None:
            raise RunError("the MLP head is not fitted")
        xt = (torch.from_numpy(np.asarray(x, dtype=np.float32)) - self.mean) / self.std
        return torch.softmax(self.net(xt), dim=1).numpy()

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        assert self.net is not None
        tensors = {f"net.{k}": v.contiguous() for k, v in self.net.state_dict().items()}
        tensors.update(mean=self.mean.contiguous(), std=self.std.contiguous())
        params = {"num_classes": self.num_classes, "hidden": self.hidden, "dropout": self.dropout,
                  "epochs": self.epochs, "lr": self.lr, "weight_decay": self.weight_decay,
                  "random_state": self.random_state}
        return tensors, params

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], params: dict[str, Any]) -> MLPHead:
        head = cls(**params)
        head.mean, head.std = tensors["mean"], tensors["std"]
        head.net = head._build(int(head.mean.shape[0]))
        head.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")}, strict=True)
        head.net.eval()
        return head


def save_head(head: Any, path: Path, extra: dict[str, Any]) -> int:
    """Write a fitted head (scikit-learn pipeline or :class:`MLPHead`) as safetensors; returns its size."""
    if isinstance(head, MLPHead):
        tensors, params = head.state()
        meta = {"earmark_probe_head": json.dumps({"kind": "mlp", "params": params, "extra": extra})}
        atomic_write(path, lambda p: save_file(tensors, str(p), metadata=meta))
        return int(sum(t.numel() for t in tensors.values()))
    return save_estimator(head, path, extra)


def load_head(path: Path) -> tuple[Any, dict[str, Any]]:
    """A head saved by :func:`save_head` and its extra information."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if "earmark_probe_head" in meta:
                info = json.loads(meta["earmark_probe_head"])
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
                return MLPHead.from_state(tensors, info["params"]), info["extra"]
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise RunError(f"{path}: cannot load the probe's head ({str(exc)[:200]}); train the run again") from None
    return load_estimator(path)


# ------------------------------------------------------------------------------------------- embeddings


def embedding_key(info: BackboneInfo, segment: SegmentConfig, sample_rate: int) -> str:
    """Cache key: the checkpoint's sha256, the segment settings and the sample rate."""
    settings = {"version": EMBED_VERSION, "sha256": info.sha256, "sample_rate": sample_rate,
                **segment.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:24]


def _digest(wave: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(wave, dtype=np.float32).tobytes(), digest_size=16).digest()


#: embeddings known in this process, per checkpoint sha256: segment digest -> its embedding. Filled when a
#: store's segments are embedded, so scoring those same segments right after fitting (the fold's test and
#: validation files) does not run the network a second time. Anything else is computed.
_KNOWN: dict[str, dict[bytes, np.ndarray]] = {}


def remember(sha256: str, waves: np.ndarray, embeddings: np.ndarray) -> None:
    known = _KNOWN.setdefault(sha256, {})
    for w, e in zip(waves, embeddings):
        known[_digest(w)] = e


def embed_segments(model: AudioSetModel, waves: np.ndarray, sample_rate: int, batch_size: int = 16) -> np.ndarray:
    """Embeddings ``(n, dim)`` of segments ``(n, samples)`` at ``sample_rate`` (resampled to the network's rate)."""
    if sample_rate != model.sample_rate and waves.shape[0]:
        import soxr

        waves = np.ascontiguousarray(soxr.resample(np.ascontiguousarray(waves.T), sample_rate, model.sample_rate,
                                                   quality="HQ").T, dtype=np.float32)
    return model.embed_numpy(waves, batch_size)


def embed_known(model: AudioSetModel, waves: np.ndarray, sample_rate: int, batch_size: int = 16) -> np.ndarray:
    """Embeddings of waveform segments ``(n, samples)``: looked up when this process embedded them already."""
    known = _KNOWN.get(model.sha256, {}) if model.sha256 else {}
    out = np.zeros((waves.shape[0], model.embed_dim), dtype=np.float32)
    missing = []
    for i, w in enumerate(waves):
        hit = known.get(_digest(w)) if known else None
        if hit is None:
            missing.append(i)
        else:
            out[i] = hit
    if missing:
        out[missing] = embed_segments(model, waves[missing], sample_rate, batch_size)
    return out


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


# ---------------------------------------------------------------------------------------------- member


@dataclass
class ProbeMember:
    """A probe as an ensemble member: waveforms ``(n, samples)`` -> probabilities ``(n, classes)``."""

    backbone: AudioSetModel
    head: Any
    num_classes: int
    sample_rate: int  # of the waveforms it is given (the run's)
    weight: float = 1.0
    name: str = ""
    batch_size: int = 16

    def predict_proba(self, waves: np.ndarray) -> np.ndarray:
        return self.head_proba(embed_known(self.backbone, waves, self.sample_rate, self.batch_size))

    def head_proba(self, emb: np.ndarray) -> np.ndarray:
        """Probabilities ``(n, classes)`` of embeddings ``(n, dim)`` (classes absent in training stay 0)."""
        out = np.zeros((emb.shape[0], self.num_classes), dtype=np.float32)
        if emb.shape[0]:
            out[:, np.asarray(self.head.classes_, dtype=np.int64)] = self.head.predict_proba(emb)
        return out

    def save(self, folder: Path, extra: dict[str, Any]) -> int:
        """Write ``backbone.safetensors`` and ``head.safetensors``; returns the number of head values."""
        info = model_info(self.backbone).as_dict()
        meta = {"earmark_backbone": json.dumps(info)}
        atomic_write(folder / BACKBONE_FILE, lambda p: save_file(self.backbone.backbone_state(), str(p), metadata=meta))
        return save_head(self.head, folder / HEAD_FILE, {"num_classes": self.num_classes, **info, **extra,
                                                          "input_sample_rate": self.sample_rate})

    @classmethod
    def load(cls, folder: Path, recipe: Recipe | None = None, weight: float = 1.0, name: str = "") -> ProbeMember:
        """The member saved in ``folder`` (needs nothing outside it)."""
        folder = Path(folder)
        try:
            with safe_open(str(folder / BACKBONE_FILE), framework="pt") as f:
                info = json.loads((f.metadata() or {})["earmark_backbone"])
                state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise RunError(f"{folder / BACKBONE_FILE}: cannot load the probe's network ({str(exc)[:200]}); "
                           "train the run again (or restore the file)") from None
        backbone = build_audioset_model(float(info["width"]), state, checkpoint=info["checkpoint"],
                                        sha256=info["sha256"])
        head, extra = load_head(folder / HEAD_FILE)
        rate = int(extra.get("input_sample_rate") or (recipe.audio.sample_rate if recipe else backbone.sample_rate))
        if recipe is not None and recipe.audio.sample_rate != rate:
            raise RunError(f"{folder}: the probe was fitted on audio at {rate} Hz, but the run's recipe says "
                           f"{recipe.audio.sample_rate} Hz")
        return cls(backbone.eval(), head, int(extra["num_classes"]), rate, weight, name)


# ------------------------------------------------------------------------------------------------- fit


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

    from .audioset import load_audioset_model

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
    from .classical import fit_pipeline

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
