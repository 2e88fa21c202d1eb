"""The training module: loss, augmentation, optimiser and schedule (the maths, apart from the Trainer).

One batch: waveforms ``(B, S)`` -> waveform augmentation -> features -> SpecAugment -> mixup -> backbone
-> soft-target cross-entropy with label smoothing -> (optional) online hard example mining.
"""
from __future__ import annotations

import logging
import math
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from ..augment import build_mixup, build_spec_augment, build_waveform_augment
from ..config import Recipe, ScheduleConfig
from ..models.net import EarmarkNet
from ..models.registry import get_spec

log = logging.getLogger(__name__)


def soft_cross_entropy(logits: Tensor, targets: Tensor, smoothing: float = 0.0,
                       class_weights: Tensor | None = None) -> Tensor:
    """Per-example cross-entropy against soft targets ``(B, C)``, with label smoothing."""
    n = logits.shape[1]
    if smoothing > 0:
        targets = targets * (1.0 - smoothing) + smoothing / n
    logp = torch.log_softmax(logits.float(), dim=1)
    if class_weights is not None:
        logp = logp * class_weights[None, :]
    return -(targets * logp).sum(dim=1)


def distillation_loss(student_logits: Tensor, teacher_probs: Tensor, temperature: float) -> Tensor:
    """Per-example ``T^2 * KL(teacher_T || student_T)`` (Hinton et al. 2015).

    The teacher is given as probabilities at temperature 1 (what an ensemble outputs); softening them to
    temperature ``T`` is ``p^(1/T)`` renormalised, the same as dividing its logits by ``T``.
    """
    t = temperature
    soft = teacher_probs.clamp_min(1e-8).pow(1.0 / t)
    soft = soft / soft.sum(dim=1, keepdim=True)
    logp = torch.log_softmax(student_logits.float() / t, dim=1)
    return (t * t) * (soft * (soft.clamp_min(1e-8).log() - logp)).sum(dim=1)


def hard_example_mining(losses: Tensor, keep: float) -> Tensor:
    """Mean of the ``keep`` fraction of largest per-example losses (OHEM); ``keep=1`` is the plain mean."""
    if keep >= 1.0:
        return losses.mean()
    k = max(1, int(math.ceil(keep * losses.numel())))
    return losses.topk(k).values.mean()


def lr_factor(cfg: ScheduleConfig, epoch: float, total_epochs: int) -> float:
    """Multiplier of the base learning rate at (fractional) ``epoch``. Plateau is handled separately."""
    warm = cfg.warmup_epochs
    if warm > 0 and epoch < warm:
        return max(epoch / warm, 1e-3)
    e = epoch - warm
    span = max(total_epochs - warm, 1e-9)
    floor = 0.0
    if cfg.name == "constant" or cfg.name == "plateau":
        return 1.0
    if cfg.name == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(e / span, 1.0)))
    if cfg.name == "cosine_restarts":
        t_i, t_cur = float(cfg.t0), e
        while t_cur >= t_i:
            t_cur -= t_i
            t_i *= cfg.t_mult
        return 0.5 * (1 + math.cos(math.pi * t_cur / t_i))
    if cfg.name == "step":
        return cfg.gamma ** int(e // cfg.step_size)
    if cfg.name == "onecycle":  # warm up for 30 % from lr/25, then cosine down to lr/1e4
        pct = e / span
        if pct < 0.3:
            return 1 / 25 + (1 - 1 / 25) * 0.5 * (1 - math.cos(math.pi * pct / 0.3))
        return 1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * min((pct - 0.3) / 0.7, 1.0)))
    raise ValueError(f"unknown schedule {cfg.name!r}")


class ClassifierModule(pl.LightningModule):
    """Trains an :class:`EarmarkNet` as a single-label classifier."""

    def __init__(self, net: EarmarkNet, recipe: Recipe, num_classes: int, steps_per_epoch: int,
                 class_weights: Tensor | None = None) -> None:
        super().__init__()
        self.net, self.recipe, self.num_classes = net, recipe, num_classes
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.wave_augment = build_waveform_augment(recipe.augment)
        # SpecAugment and warping need spectrograms: a model on raw waveforms (raw1d) trains without them,
        # and the run records no spectrogram augmentation.
        takes_spectrograms = get_spec(recipe.model.name).input == "spectrogram"
        self.spec_augment = build_spec_augment(recipe.augment) if takes_spectrograms else nn.Sequential()
        self.mixup = build_mixup(recipe.augment)
        if class_weights is not None:
            self.register_buffer("class_weights", class_weights.float(), persistent=False)
        else:
            self.class_weights = None
        self.frozen_blocks: list[str] = []
        if recipe.model.freeze_blocks and recipe.model.pretrained:
            from ..models.pretrained import freeze_first_blocks

            self.frozen_blocks = freeze_first_blocks(net.backbone, recipe.model.freeze_blocks)
        elif recipe.model.freeze_blocks:
            log.warning("model.freeze_blocks=%d ignored: the network has no pretrained weights",
                        recipe.model.freeze_blocks)

    def describe_augmentation(self) -> list[dict[str, Any]]:
        mods = [*self.wave_augment, *self.spec_augment] + ([self.mixup] if self.mixup else [])
        return [m.describe() for m in mods if hasattr(m, "describe")]

    def forward(self, wave: Tensor) -> Tensor:
        return self.net(wave)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        wave, y = batch[0], batch[1]
        wave = self.wave_augment(wave)
        x = self.spec_augment(self.net.features(wave))
        targets = nn.functional.one_hot(y, self.num_classes).float()
        teacher = batch[2] if len(batch) > 2 else None
        if self.mixup is not None:  # mix true and teacher targets with the same pairs and weights
            both = targets if teacher is None else torch.cat([targets, teacher], dim=1)
            x, both = self.mixup(x, both)
            targets, teacher = (both, None) if teacher is None else both.split(self.num_classes, dim=1)
        logits = self.net.backbone(x)
        losses = soft_cross_entropy(logits, targets, self.recipe.train.label_smoothing, self.class_weights)
        if teacher is not None:
            d = self.recipe.distill
            losses = (1 - d.alpha) * losses + d.alpha * distillation_loss(logits, teacher, d.temperature)
        loss = hard_example_mining(losses, self.recipe.train.hard_mining)
        acc = (logits.argmax(1) == targets.argmax(1)).float().mean()
        # sync_dist: under DDP the epoch means cover every process's batches (a no-op on one process)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=y.numel(),
                 sync_dist=True)
        self.log("train_acc", acc, on_step=False, on_epoch=True, batch_size=y.numel(), sync_dist=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        wave, y = batch
        logits = self.net(wave)
        loss = nn.functional.cross_entropy(logits.float(), y)
        acc = (logits.argmax(1) == y).float().mean()
        self.log("val_loss", loss, on_epoch=True, prog_bar=True, batch_size=y.numel(), sync_dist=True)
        self.log("val_acc", acc, on_epoch=True, prog_bar=True, batch_size=y.numel(), sync_dist=True)

    def configure_optimizers(self) -> Any:
        t = self.recipe.train
        params: Any = [p for p in self.net.parameters() if p.requires_grad]
        if t.head_lr_mult != 1.0:  # the (new) classifier head learns faster than the (pretrained) rest
            from ..models.pretrained import classifier_head

            head = {id(p) for p in classifier_head(self.net.backbone).parameters()}
            params = [{"params": [p for p in params if id(p) not in head]},
                      {"params": [p for p in params if id(p) in head], "lr": t.lr * t.head_lr_mult}]
        if t.optimizer == "adamw":
            opt = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
        elif t.optimizer == "adam":
            opt = torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
        else:
            opt = torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay, nesterov=True)
        sched = t.schedule
        floor = min(sched.eta_min / t.lr, 1.0)  # schedules decay towards eta_min, not to zero

        def factor(step: int) -> float:
            f = lr_factor(sched, step / self.steps_per_epoch, t.epochs)
            if sched.name in ("cosine", "cosine_restarts"):
                f = floor + (1.0 - floor) * f
            return f * self.plateau_scale

        per_step = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return [opt], [{"scheduler": per_step, "interval": "step"}]

    # Reduce-on-plateau as a factor on top of the per-step schedule (so warm-up still applies), kept in
    # the checkpoint so a resumed run continues with the same learning rate.
    plateau_scale: float = 1.0
    _plateau_best: float = math.inf
    _plateau_bad: int = 0

    def on_validation_epoch_end(self) -> None:
        sched = self.recipe.train.schedule
        if sched.name != "plateau" or self.trainer.sanity_checking:
            return
        value = self.trainer.callback_metrics.get("val_loss")
        if value is None:
            return
        if float(value) < self._plateau_best - 1e-4:
            self._plateau_best, self._plateau_bad = float(value), 0
        else:
            self._plateau_bad += 1
            if self._plateau_bad > sched.patience:
                self.plateau_scale *= sched.factor
                self._plateau_bad = 0

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["earmark_plateau"] = [self.plateau_scale, self._plateau_best, self._plateau_bad]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "earmark_plateau" in checkpoint:
            self.plateau_scale, self._plateau_best, self._plateau_bad = checkpoint["earmark_plateau"]

    def on_train_epoch_start(self) -> None:
        n = self.trainer.num_training_batches
        if isinstance(n, int) and n > 0:  # under DDP each process steps through 1/N of the batches
            self.steps_per_epoch = n
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=False, on_epoch=True,
                 sync_dist=True)
        loader = self.trainer.train_dataloader
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.current_epoch)
