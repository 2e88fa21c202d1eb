"""Fit one network with Lightning: callbacks, loggers, checkpoints, resume, devices.

The same code trains on a laptop CPU or many GPUs: ``train.accelerator``, ``train.devices``,
``train.strategy`` (e.g. ``ddp``), ``train.num_nodes`` and ``train.precision`` go straight to the
Lightning ``Trainer``. An interrupted fit resumes from ``checkpoints/last.ckpt`` (loaded with
``weights_only=True``: no pickled objects are executed).
"""
from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import Recipe
from ..data.loader import SegmentDataset, SegmentTable, make_loader
from ..data.store import PreparedStore
from ..errors import DatasetError, RunError
from ..models.net import EarmarkNet, build_net
from ..models.registry import get_spec
from ..utils.files import atomic_write_json
from .distributed import is_global_zero

log = logging.getLogger(__name__)

#: samples of training segments used to estimate the feature normalisation statistics
_STATS_SEGMENTS = 2048


@dataclass
class FitResult:
    net: EarmarkNet
    info: dict[str, Any]


def quiet_lightning() -> None:
    """Keep Lightning's start-up chatter (GPU/TPU availability, tips) out of the user's terminal."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda",
                 "lightning.fabric.utilities.rank_zero", "lightning.pytorch.callbacks.model_summary"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*The number of training batches.*")
    warnings.filterwarnings("ignore", message=".*Checkpoint directory.*exists and is not empty.*")
    # On resume: earmark has already moved the previous attempt's metrics.csv aside (_loggers), so nothing
    # of value is deleted; the warning would only alarm.
    warnings.filterwarnings("ignore", message=".*Previous log files in this directory will be deleted.*")
    warnings.filterwarnings("ignore", message=".*You defined a `validation_step` but have no `val_dataloader`.*")


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A training checkpoint, read with ``weights_only=True``: tensors and plain containers only.

    Raises:
        RunError: the file holds anything else (a pickled object, which is never executed), or is damaged.
    """
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, a damaged zip, ...: all mean "not ours"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise RunError(f"{path}: refused to load: not a plain checkpoint (weights only) or damaged "
                       f"({first}). Nothing in it was run. Delete it to train this member again from scratch"
                       ) from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise RunError(f"{path}: not a training checkpoint (no state_dict); delete it to train this member "
                       "again")
    return ckpt


@torch.no_grad()
def fit_normalizer(net: EarmarkNet, store: PreparedStore, table: SegmentTable, seed: int, batch: int = 128) -> None:
    """Set the network's feature statistics from (a sample of) the training segments."""
    norm = net.norm
    if not hasattr(norm, "fit"):
        return
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(table), size=min(len(table), _STATS_SEGMENTS), replace=False))
    feats = [net.frontend(torch.from_numpy(table.read(store, rows[b: b + batch])))
             for b in range(0, rows.size, batch)]
    norm.fit(torch.cat(feats))  # type: ignore[operator]


def _loggers(recipe: Recipe, folder: Path) -> list[Any]:
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    out: list[Any] = []
    csv_dir = folder / "logs" / "csv"
    if is_global_zero() and (csv_dir / "metrics.csv").is_file():  # resuming: Lightning would delete the log
        attempt = len(list(csv_dir.glob("metrics.attempt*.csv")))
        (csv_dir / "metrics.csv").rename(csv_dir / f"metrics.attempt{attempt}.csv")
        log.info("resuming: the previous attempt's metrics are kept in %s", csv_dir / f"metrics.attempt{attempt}.csv")
    for name in recipe.train.loggers:
        if name == "csv":
            out.append(CSVLogger(str(folder), name="logs", version="csv"))
        elif name == "tensorboard":
            out.append(TensorBoardLogger(str(folder), name="logs", version="tensorboard", default_hp_metric=False))
        else:
            from .tracking import optional_logger

            extra = optional_logger(name, recipe, folder)
            if extra is not None:
                out.append(extra)
    return out


def _strategy(recipe: Recipe) -> str:
    """``train.strategy``; with a frozen backbone, DDP must expect parameters without gradients."""
    if recipe.model.freeze_backbone and recipe.train.strategy == "ddp":
        return "ddp_find_unused_parameters_true"
    return recipe.train.strategy


def _fit_info(seed: int, net: torch.nn.Module, train_segments: int, val_segments: int,
              pretrained: dict[str, Any] | None, **fit: Any) -> dict[str, Any]:
    """A member's ``fit.json``: its seed, what the fit did (``fit``), the data sizes and the network."""
    return {"seed": seed, **fit, "train_segments": train_segments, "val_segments": val_segments,
            "parameters": int(sum(p.numel() for p in net.parameters())),
            **({"pretrained": pretrained} if pretrained else {})}


def fit_network(
    recipe: Recipe,
    classes: list[str],
    store: PreparedStore,
    labels_per_file: np.ndarray,
    train_files: np.ndarray,
    val_files: np.ndarray,
    folder: Path,
    seed: int,
    teacher: Any = None,
) -> FitResult:
    """Train (or resume training) one network in ``folder``; return it with the best weights loaded.

    ``classes``: the class names, in label order. ``teacher``: for distillation, a function from the training
    :class:`SegmentTable` to the teacher's probabilities ``(segments, classes)``. With ``train.epochs=0`` the
    network is returned as loaded (its head started from ``model.head_labels``), nothing trained.
    """
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from .module import ClassifierModule

    quiet_lightning()
    folder.mkdir(parents=True, exist_ok=True)
    num_classes = len(classes)
    t = recipe.train
    sr = recipe.audio.sample_rate
    pl.seed_everything(seed, workers=True, verbose=False)
    train_table = SegmentTable.build(store, train_files, recipe.segment, sr)
    val_table = SegmentTable.build(store, val_files, recipe.segment, sr)
    if len(train_table) == 0:
        raise DatasetError(f"{folder}: no training segments (every training file was skipped or dropped)")
    soft = teacher(train_table) if teacher is not None else None
    train_set = SegmentDataset(store, train_table, labels_per_file, soft)
    val_set = SegmentDataset(store, val_table, labels_per_file) if len(val_table) else None

    net = build_net(recipe, num_classes)
    pretrained: dict[str, Any] | None = None
    if recipe.model.pretrained:  # only when training: a finished run loads its own weights
        from ..models.pretrained import load_pretrained

        pretrained = load_pretrained(net.backbone, recipe.model.pretrained).summary()
        if recipe.model.head_labels:
            from ..models.pretrained import head_from_labels

            pretrained["head_labels"] = head_from_labels(net.backbone, recipe.model.pretrained, list(classes),
                                                         recipe.model.head_labels, require_all=t.epochs == 0)
    fit_normalizer(net, store, train_table, seed)
    if t.epochs == 0:  # zero-shot: the pretrained network as loaded
        info = _fit_info(seed, net, len(train_table), len(val_table), pretrained, epochs_run=0, best_epoch=None,
                         monitor=None, best_score=None, train_seconds=0.0, augmentation=[])
        if is_global_zero():
            atomic_write_json(folder / "fit.json", info)
        return FitResult(net.cpu().eval(), info)
    class_weights = None
    if t.class_balance == "weights":
        counts = np.bincount(train_set.segment_labels(), minlength=num_classes).astype(np.float64)
        w = counts.sum() / np.maximum(counts, 1) / num_classes
        class_weights = torch.tensor(w, dtype=torch.float32)
    train_loader = make_loader(train_set, t.batch_size, shuffle=True, seed=seed,
                               balanced=t.class_balance == "sampler", drop_last=len(train_set) > t.batch_size,
                               num_workers=t.num_workers)
    val_loader = (make_loader(val_set, recipe.eval.batch_size, shuffle=False, num_workers=t.num_workers)
                  if val_set is not None else None)
    channels_last = t.channels_last and get_spec(recipe.model.name).input == "spectrogram"
    if channels_last:
        net.backbone = net.backbone.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    module = ClassifierModule(net, recipe, num_classes, len(train_loader), class_weights)
    if t.compile:
        module.net.backbone = torch.compile(module.net.backbone)  # type: ignore[assignment]

    # Without a validation set there is nothing to choose a "best" epoch by: the last one is kept, and
    # written every epoch so an interrupted fit resumes where it stopped (Lightning only refreshes
    # ``save_last`` when a top-k checkpoint was saved, so the rolling checkpoint itself is named "last").
    monitor = t.monitor if val_loader is not None else None
    mode = "max" if monitor == "val_acc" else "min"
    ckpt_dir = folder / "checkpoints"
    checkpoint = ModelCheckpoint(dirpath=str(ckpt_dir), filename="best" if monitor else "last", monitor=monitor,
                                 mode=mode, save_top_k=1, save_last=bool(monitor), enable_version_counter=False)
    callbacks: list[Any] = [checkpoint]
    if t.early_stopping and val_loader is not None:
        callbacks.append(EarlyStopping(monitor=str(monitor), mode=mode, patience=t.early_stopping))
    if recipe.model.freeze_backbone:
        from .finetune import BackboneFreezer

        callbacks.append(BackboneFreezer(recipe.model.unfreeze_after))
    show = t.progress and os.environ.get("EARMARK_PROGRESS", "1") != "0"
    trainer = pl.Trainer(
        max_epochs=t.epochs, accelerator=t.accelerator, devices=t.devices, strategy=_strategy(recipe),
        num_nodes=t.num_nodes, precision=t.precision,  # type: ignore[arg-type]
        gradient_clip_val=t.grad_clip, callbacks=callbacks,
        logger=_loggers(recipe, folder) or False, enable_progress_bar=show, enable_model_summary=False,
        default_root_dir=str(folder), num_sanity_val_steps=0, log_every_n_steps=max(1, min(50, len(train_loader))),
        max_time={"minutes": t.max_minutes} if t.max_minutes else None,  # type: ignore[dict-item]
        use_distributed_sampler=True,
        deterministic=False,
    )
    last = ckpt_dir / "last.ckpt"
    if last.is_file():
        epoch = load_checkpoint(last).get("epoch")
        log.info("resuming %s from its last checkpoint (epoch %s)", folder.name, epoch)
    started = time.perf_counter()
    trainer.fit(module, train_loader, val_loader, ckpt_path=str(last) if last.is_file() else None,
                weights_only=True)
    seconds = time.perf_counter() - started

    best_path = Path(checkpoint.best_model_path) if checkpoint.best_model_path else last
    best_epoch = None
    if best_path.is_file():
        best = load_checkpoint(best_path)
        module.load_state_dict(best["state_dict"])
        best_epoch = best.get("epoch")
    net = module.net
    if t.compile:
        net.backbone = getattr(net.backbone, "_orig_mod", net.backbone)
    net = net.cpu().eval().to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    score = checkpoint.best_model_score
    info = _fit_info(seed, net, len(train_table), len(val_table), pretrained,
                     epochs_run=int(trainer.current_epoch), best_epoch=best_epoch, monitor=monitor,
                     best_score=float(score) if score is not None else None, train_seconds=seconds,
                     augmentation=module.describe_augmentation())
    if trainer.is_global_zero:
        atomic_write_json(folder / "fit.json", info)
    return FitResult(net, info)

