"""Several processes, one run folder: which process writes, and what the others do.

With ``train.devices=N`` (DDP) Lightning starts N-1 more processes by running the same command again
(``earmark train ...`` or your script); ``torchrun`` and SLURM start them all at once. Every process must
take part in every fit, in the same order, but only the first (global rank 0) writes the run folder:
the others (:func:`follow`) walk the same folds and members and join each network fit, and write nothing.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Recipe

log = logging.getLogger(__name__)

#: environment variables that hold a process's rank under Lightning's launcher, torchrun, or SLURM
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")


def is_global_zero() -> bool:
    """True in the process that writes the run folder (a single process, or rank 0 of a distributed job)."""
    for name in RANK_VARIABLES:
        value = os.environ.get(name, "0").strip() or "0"
        try:
            if int(value) != 0:
                return False
        except ValueError:
            continue
    return True


def follow(data: str | Path, out: str | Path, recipe: "Recipe") -> None:
    """A non-zero rank's part of ``earmark train``: join every network fit that rank 0 runs; write nothing.

    Rank 0 trains a member only when its ``member.json`` is missing, and writes it only after the fit that
    every rank takes part in, so both sides take the same decisions in the same order.
    """
    from ..data.dataset import dataset_folds, load_dataset
    from ..models.registry import get_spec
    from ..run import RunFolder
    from .fit import fit_network
    from .members import plan_members

    logging.getLogger("earmark").setLevel(logging.WARNING)
    if getattr(recipe, "variants", None):  # each variant is a run of its own, trained in turn
        for name in recipe.variants:
            follow(data, Path(out) / "variants" / name, recipe.variant(name))
        return
    run = RunFolder(Path(out))
    ds = load_dataset(data, recipe, show_progress=False)
    for fold in dataset_folds(ds, recipe):  # the same folds rank 0 computes
        for plan in plan_members(recipe, ds, fold):
            folder = run.member_dir(fold.name, plan.index)
            if (folder / "member.json").is_file() or not get_spec(plan.recipe.model.name).is_deep:
                continue
            teacher = None
            if plan.recipe.distill.teacher:  # the same soft targets as rank 0, or the gradients would differ
                from .distill import teacher_for_fold

                teacher = teacher_for_fold(plan.recipe, ds, fold)
            fit_network(plan.recipe, list(ds.labels), ds.store, ds.label_index, plan.train, plan.val, folder,
                        plan.seed, teacher)
