"""Pretrained checkpoints by name: where they live, where they come from, and their pinned sha256.

``model.pretrained: mn04_as`` names a known checkpoint; :func:`resolve_weights` finds its file in the weights
folder (``$EARMARK_WEIGHTS``, default ``~/.cache/earmark/weights``). A file that is not there is downloaded
once from the official release (a progress bar on stderr, into a temporary file renamed when complete) and
its sha256 is checked before use; a file whose hash differs is refused (a downloaded one is deleted).
Offline (or with ``EARMARK_OFFLINE=1``) and not found: a :class:`~earmark.errors.WeightsError` that names
the file, the folder to put it in and the address to get it from. A checkpoint whose hash is not pinned
here (``sha256=None``: we could not verify that file) is refused unless ``EARMARK_ALLOW_UNPINNED=1``.
A path (``model.weights: PATH``, or any value that is not a known name) is used as given.

Weights are read by :func:`load_state_dict_file`: safetensors, or a torch file loaded with
``weights_only=True``; nothing is ever unpickled.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import WeightsError

log = logging.getLogger(__name__)

#: the EfficientAT release the checkpoints come from (GitHub ``fschmid56/EfficientAT``, MIT)
RELEASE_URL = "https://github.com/fschmid56/EfficientAT/releases/download/v0.0.1/"
#: the 527 AudioSet class names in the output order of the ``*_as`` checkpoints
AUDIOSET_CLASSES = "audioset_class_labels_indices.csv"
_AUDIOSET_CLASSES_URL = "https://raw.githubusercontent.com/fschmid56/EfficientAT/main/metadata/class_labels_indices.csv"
_AUDIOSET_CLASSES_SHA256 = "cdd1049833c4b86127c2773ac0d14a2754b6a6d0d1798002ed5c66e699708429"
_NESTED = ("state_dict", "model_state_dict", "model", "module", "net", "ema", "state_dict_ema", "weights", "params")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Checkpoint:
    """A known weights file: its name, architecture, release file and pinned sha256 (None: not pinned)."""

    name: str
    model: str
    file: str
    sha256: str | None
    num_classes: int = 527
    classes: str | None = AUDIOSET_CLASSES
    url: str | None = None

    @property
    def source(self) -> str:
        return self.url or RELEASE_URL + self.file


def _efficientat(model: str, mAP: int, sha256: str | None = None) -> Checkpoint:
    return Checkpoint(f"{model}_as", model, f"{model}_as_mAP_{mAP}.pt", sha256)


#: Known checkpoints. Only mn04_as is pinned: its file was verified here (../shared/weights, identical to the
#: release). The others are listed with their release file names; pin a hash once the file is verified.
CHECKPOINTS: dict[str, Checkpoint] = {c.name: c for c in [
    _efficientat("mn01", 298), _efficientat("mn02", 378),
    _efficientat("mn04", 432, "899a8c6217063f6941793102a2780b3dd788ab11fce468d9cf5f0577c453321c"),
    _efficientat("mn05", 443), _efficientat("mn10", 471), _efficientat("mn20", 478), _efficientat("mn30", 482),
    _efficientat("mn40", 484)]}


def weights_dir() -> Path:
    """The folder named checkpoints are looked up in and downloaded to."""
    return Path(os.environ.get("EARMARK_WEIGHTS") or Path.home() / ".cache" / "earmark" / "weights").expanduser()


def get_checkpoint(name: str) -> Checkpoint:
    if name not in CHECKPOINTS:
        raise WeightsError(f"unknown checkpoint {name!r}; known: {', '.join(sorted(CHECKPOINTS))} (or give the path "
                           "of a weights file)")
    return CHECKPOINTS[name]


def is_checkpoint_name(value: str | Path) -> bool:
    return isinstance(value, str) and value in CHECKPOINTS


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _allow_unpinned() -> bool:
    return os.environ.get("EARMARK_ALLOW_UNPINNED", "0") == "1"


def _missing(file: str, folder: Path, url: str, why: str) -> WeightsError:
    return WeightsError(f"{file} is not in {folder} and could not be downloaded ({why}). Download it from {url} "
                        f"and put it in {folder} (the folder EARMARK_WEIGHTS names, default ~/.cache/earmark/weights), "
                        "or give its path with --set model.weights=PATH")


def download(url: str, dest: Path, sha256: str | None, timeout: float = 30.0) -> Path:
    """Fetch ``url`` to ``dest`` through a temporary file in the same folder; checked against ``sha256`` before
    it is renamed into place (a mismatch deletes it and raises :class:`WeightsError`)."""
    from ..utils.progress import progress

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with progress(total, desc=f"downloading {dest.name}", unit="B", unit_scale=True) as bar:
                for block in iter(lambda: resp.read(_CHUNK), b""):
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
        got = digest.hexdigest()
        if sha256 is not None and got != sha256:
            raise WeightsError(f"{url}: the download's sha256 is {got}, expected {sha256}; refused and deleted "
                               f"(a changed or corrupted file). Try again, or get {dest.name} another way and put "
                               f"it in {dest.parent}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("downloaded %s (sha256 %s)", dest, got)
    return dest


def _fetch(file: str, url: str, sha256: str | None, what: str) -> Path:
    """A named file in the weights folder: found (hash checked) or downloaded once."""
    folder = weights_dir()
    path = folder / file
    if sha256 is None and not _allow_unpinned():
        raise WeightsError(f"{what}: no sha256 is pinned for {file} in earmark, so it is not used (a file we cannot "
                           "verify); set EARMARK_ALLOW_UNPINNED=1 to use it anyway, or give a file you trust with "
                           "--set model.weights=PATH")
    if not path.is_file():
        if os.environ.get("EARMARK_OFFLINE", "0") == "1":
            raise _missing(file, folder, url, "EARMARK_OFFLINE=1")
        try:
            download(url, path, sha256)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise _missing(file, folder, url, f"{type(exc).__name__}: {reason}") from None
        return path
    if sha256 is None:
        log.warning("%s: using %s without a pinned sha256 (EARMARK_ALLOW_UNPINNED=1)", what, path)
        return path
    got = sha256_file(path)
    if got != sha256:
        raise WeightsError(f"{path}: sha256 {got} differs from the pinned {sha256} of {what}; refused. Delete the "
                           f"file to download it again from {url}")
    return path


def resolve_weights(name_or_path: str | Path) -> Path:
    """The file of a known checkpoint name (found or downloaded, hash checked) or a path used as given."""
    if is_checkpoint_name(name_or_path):
        ckpt = CHECKPOINTS[str(name_or_path)]
        return _fetch(ckpt.file, ckpt.source, ckpt.sha256, f"checkpoint {ckpt.name}")
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        known = ", ".join(sorted(CHECKPOINTS))
        raise WeightsError(f"{name_or_path}: the weights file does not exist, and it is not a known checkpoint "
                           f"name ({known})")
    return path


def resolve_classes(name: str) -> Path:
    """The class-names CSV (``index,mid,display_name``) of a known checkpoint, found or downloaded."""
    ckpt = get_checkpoint(name)
    if ckpt.classes != AUDIOSET_CLASSES:
        raise WeightsError(f"checkpoint {name} has no class-names file")
    return _fetch(AUDIOSET_CLASSES, _AUDIOSET_CLASSES_URL, _AUDIOSET_CLASSES_SHA256, f"the class names of {name}")


def class_names(name: str) -> list[str]:
    """The display names of a checkpoint's outputs, in output order."""
    import csv

    with open(resolve_classes(name), newline="", encoding="utf-8") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: int(r["index"]))
    names = [r["display_name"] for r in rows]
    if len(names) != CHECKPOINTS[name].num_classes:
        raise WeightsError(f"the class names of {name} list {len(names)} classes, expected "
                           f"{CHECKPOINTS[name].num_classes}")
    return names


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a weights file: safetensors, or a torch checkpoint loaded with ``weights_only=True``
    (nothing unpickled); a dict nested under ``state_dict`` / ``model`` / ``module`` / ... is unwrapped."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"{path} does not exist; give the path of a local weights file (.safetensors, .pt, .pth "
                           "or .ckpt) or a known checkpoint name")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        else:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise WeightsError(f"cannot read {path} as safetensors or as a torch state dict loaded with "
                           f"weights_only=True ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); save plain "
                           "tensors, e.g. torch.save(model.state_dict(), path)") from None
    for _ in range(3):  # unwrap {"state_dict": {...}} and the like
        if isinstance(obj, Mapping) and not any(isinstance(v, Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _NESTED if isinstance(obj.get(k), Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path} holds a {type(obj).__name__}, not a dict of tensors")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}
    if not tensors:
        raise WeightsError(f"{path} holds no tensors (keys: {sorted(obj)[:8]})")
    return tensors

