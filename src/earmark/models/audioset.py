"""A pretrained AudioSet network as one module: waveforms at 32 kHz in, AudioSet logits or embeddings out.

The tagger (:mod:`earmark.inference.tagger`), ``earmark embed`` and the linear probe
(:mod:`earmark.models.probe`) all use the same frozen network: the EfficientAT front-end (a configuration
of the project's filter bank) followed by an ``mn`` backbone with its 527-class AudioSet head.

    >>> model = load_audioset_model("mn04_as")          # resolves the checkpoint, loads it strictly
    >>> model(wave)                                      # (batch, samples) -> logits (batch, 527)
    >>> model.embed(wave)                                # -> pooled embeddings (batch, model.embed_dim)
    >>> audioset_labels(model.weights_path)              # the 527 class names, in output order
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .efficientat import MN

#: name of the AudioSet class list, next to the weights and shipped in this package
LABELS_FILE = "audioset_class_labels_indices.csv"
#: the default pretrained tagger / embedding model
DEFAULT_MODEL = "mn04_as"


def read_labels_csv(path: str | Path) -> list[str]:
    """``display_name`` of each row of an AudioSet ``class_labels_indices`` CSV, ordered by ``index``."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or "display_name" not in rows[0]:
        raise ConfigError(f"{path}: not an AudioSet class list (expected columns index, mid, display_name)")
    return [r["display_name"] for r in sorted(rows, key=lambda r: int(r["index"]))]


def audioset_labels(weights_path: str | Path | None = None) -> list[str]:
    """The 527 AudioSet class names: the CSV next to the weights if there is one, else the copy shipped here."""
    if weights_path is not None:
        beside = Path(weights_path).parent / LABELS_FILE
        if beside.is_file():
            return read_labels_csv(beside)
    return read_labels_csv(Path(str(resources.files("earmark.models") / LABELS_FILE)))


class AudioSetModel(nn.Module):
    """Waveforms ``(batch, samples)`` at :attr:`sample_rate` -> AudioSet logits ``(batch, 527)``.

    ``embed`` gives the pooled features before the classifier ``(batch, embed_dim)``. Any number of
    samples works (the network pools over time); the model was trained on 10 s clips.
    """

    def __init__(self, frontend: nn.Module, network: MN, sample_rate: int, width: float,
                 checkpoint: str = "", sha256: str = "", weights_path: Path | None = None) -> None:
        super().__init__()
        self.frontend, self.network = frontend, network
        self.sample_rate, self.width = int(sample_rate), float(width)
        self.checkpoint, self.sha256, self.weights_path = checkpoint, sha256, weights_path

    @property
    def embed_dim(self) -> int:
        return int(self.network.embed_dim)

    @property
    def num_classes(self) -> int:
        return int(getattr(self.network, "num_classes", 527))

    def features(self, wave: Tensor) -> Tensor:
        return self.frontend(wave)

    def forward(self, wave: Tensor) -> Tensor:
        return self.network(self.features(wave))

    def embed(self, wave: Tensor) -> Tensor:
        return self.network.forward_features(self.features(wave))

    @torch.inference_mode()
    def embed_numpy(self, waves: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """Embeddings ``(n, embed_dim)`` float32 of equal-length waveforms ``(n, samples)``, in batches."""
        device = next(self.parameters()).device
        out = [self.embed(torch.from_numpy(np.ascontiguousarray(waves[b: b + batch_size], dtype=np.float32))
                          .to(device)).float().cpu().numpy() for b in range(0, waves.shape[0], batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.embed_dim), dtype=np.float32)

    def set_fft(self, mode: str) -> None:
        for m in self.frontend.modules():
            setter = getattr(m, "set_fft", None) if m is not self.frontend else None
            if callable(setter):
                setter(mode)
                return

    def backbone_state(self) -> dict[str, Tensor]:
        """The network's weights (what a self-contained probe member stores)."""
        return {k: v.detach().contiguous() for k, v in self.network.state_dict().items()}


@dataclass(frozen=True)
class BackboneInfo:
    """What identifies a loaded checkpoint (recorded with every embedding cache and probe member)."""

    checkpoint: str
    sha256: str
    width: float
    embed_dim: int
    sample_rate: int

    def as_dict(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "sha256": self.sha256, "width": self.width,
                "embed_dim": self.embed_dim, "sample_rate": self.sample_rate}


def model_info(model: AudioSetModel) -> BackboneInfo:
    return BackboneInfo(model.checkpoint, model.sha256, model.width, model.embed_dim, model.sample_rate)


# ------------------------------------------------------------------------------------------- building


def efficientat_frontend() -> tuple[nn.Module, int]:
    """The EfficientAT front-end (a configuration of the project's filter bank) and its sample rate:
    waveforms ``(batch, samples)`` -> normalised log-mels ``(batch, 1, frames, 128)``."""
    from .efficientat import efficientat_features
    from .net import Standardize, build_frontend, n_bands

    cfg, sample_rate = efficientat_features()
    norm = Standardize(n_bands(cfg), cfg.normalize, cfg.norm_offset, cfg.norm_scale)
    return nn.Sequential(build_frontend(cfg, sample_rate), norm), sample_rate


def build_audioset_model(width: float, state: dict[str, Tensor] | None = None, checkpoint: str = "",
                         sha256: str = "", weights_path: Path | None = None) -> AudioSetModel:
    """An ``mn`` network of ``width`` with its 527-class head behind the EfficientAT front-end; ``state``
    (a checkpoint's state dict) is loaded strictly."""
    from .efficientat import build_mn

    frontend, sample_rate = efficientat_frontend()
    network = build_mn(width, num_classes=527, layout="frames_mels")
    if state is not None:
        try:
            network.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ConfigError(f"{checkpoint or 'the weights'} do not fit an EfficientAT mn network of width "
                              f"{width:g} with 527 classes ({str(exc)[:300]})") from None
    return AudioSetModel(frontend, network, sample_rate, width, checkpoint, sha256, weights_path).eval()


def checkpoint_width(name_or_path: str, state: dict[str, Tensor]) -> float:
    """Width multiplier of a checkpoint: from the table of known checkpoints, else from its name
    (``mn04...`` -> 0.4), else from the shape of its last convolution."""
    from .efficientat import WIDTHS

    stem = Path(name_or_path).name[:4]
    if stem in WIDTHS:
        return WIDTHS[stem]
    last = [v for k, v in state.items() if k.startswith("features.") and k.endswith(".0.weight") and v.dim() == 4]
    if last:
        channels = int(last[-1].shape[0])
        for width in WIDTHS.values():
            from .efficientat import make_divisible

            if 6 * make_divisible(160 * width) == channels:
                return width
    raise ConfigError(f"{name_or_path}: cannot tell which EfficientAT width this checkpoint has; name the file "
                      "after its model (mn04_..., mn10_...)")


def load_audioset_model(name_or_path: str = DEFAULT_MODEL) -> AudioSetModel:
    """A released AudioSet checkpoint (a known name such as ``mn04_as``, resolved with
    :func:`~earmark.models.weights.resolve_weights`, or a weights file), loaded strictly, in eval mode."""
    from .weights import is_checkpoint_name, load_state_dict_file, resolve_weights, sha256_file

    path = Path(resolve_weights(name_or_path))
    state = load_state_dict_file(path)
    name = name_or_path if is_checkpoint_name(name_or_path) else path.stem
    width = checkpoint_width(name_or_path if is_checkpoint_name(name_or_path) else path.name, state)
    return build_audioset_model(width, state, checkpoint=name, sha256=sha256_file(path), weights_path=path)
