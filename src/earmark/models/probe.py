"""Linear probe: a frozen pretrained AudioSet network's embeddings, then a small fitted head.

    earmark train data/ --recipe pretrained-probe                  # mn04_as + logistic regression
    earmark train data/ --set model.name=probe_mlp --set model.pretrained=mn04_as

Every segment of the prepared store is embedded once with the frozen network (batched, no gradients)
and the embeddings are cached inside the store's folder, keyed by the checkpoint's sha256 and the segment
settings, so the next fold, member or run on the same data reuses them (segments of a run at another rate
than the network's 32 kHz are resampled to it first; ``audio.sample_rate=32000``, as the recipe sets,
decodes at that rate once; the fitting and the cache live in :mod:`earmark.training.probe`). The head
is fitted on the training segments' embeddings: ``probe`` is a
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..config import Recipe
from ..errors import RunError
from ..utils.files import atomic_write
from .audioset import AudioSetModel, build_audioset_model, model_info
from .registry import register_model
from .sklearn_state import load_estimator, save_estimator

log = logging.getLogger(__name__)

BACKBONE_FILE = "backbone.safetensors"
HEAD_FILE = "head.safetensors"
#: bump when the way embeddings are computed changes (invalidates every cache)


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
