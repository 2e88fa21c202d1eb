"""Fine-tuning: train only the classifier head first, then (optionally) the whole network.

``model.freeze_backbone: true`` freezes every parameter of the network except its classifier head;
``model.unfreeze_after: N`` unfreezes them all from epoch ``N`` on (``null``: frozen to the end). The
head is found by :func:`earmark.models.pretrained.classifier_head`: ``get_classifier()`` for timm models,
``.head`` for earmark's own networks.

How: all parameters stay in the optimiser; a frozen one gets ``requires_grad=False``, so it has no
gradient and the optimiser (AdamW, Adam, SGD) leaves it untouched, weight decay included. Unfreezing
needs no new parameter group, so the learning-rate schedule applies to every parameter alike. The state
is set at the start of every epoch from the epoch number, so a resumed run freezes exactly as the
interrupted one did. Batch-norm statistics of the frozen layers still follow the new data (they are
buffers, not parameters). Under DDP a frozen parameter has no gradient to reduce: fit uses
``ddp_find_unused_parameters_true`` when freezing is on.
"""
from __future__ import annotations

import logging
from typing import Any

from lightning.pytorch.callbacks import Callback
from torch import nn

from ..models.pretrained import classifier_head

log = logging.getLogger(__name__)


def backbone_parameters(net: nn.Module) -> list[nn.Parameter]:
    """Every parameter of an :class:`~earmark.models.net.EarmarkNet` except its classifier head's."""
    head = {id(p) for p in classifier_head(net.backbone).parameters()}  # type: ignore[arg-type]
    return [p for p in net.parameters() if id(p) not in head]


def set_frozen(net: nn.Module, frozen: bool) -> int:
    """Freeze (or unfreeze) all but the head; returns how many parameter tensors changed state."""
    changed = 0
    for p in backbone_parameters(net):
        if p.requires_grad == frozen:
            p.requires_grad_(not frozen)
            changed += 1
    return changed


class BackboneFreezer(Callback):
    """Keeps the backbone frozen for ``unfreeze_after`` epochs (``None``: for the whole fit)."""

    def __init__(self, unfreeze_after: int | None = None) -> None:
        self.unfreeze_after = unfreeze_after

    def frozen_at(self, epoch: int) -> bool:
        return self.unfreeze_after is None or epoch < self.unfreeze_after

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        frozen = self.frozen_at(trainer.current_epoch)
        if set_frozen(pl_module.net, frozen):
            log.info("epoch %d: backbone %s", trainer.current_epoch, "frozen (training the head only)" if frozen
                     else "unfrozen (training the whole network)")

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        set_frozen(pl_module.net, False)  # the returned network is an ordinary one
