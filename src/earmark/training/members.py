"""Which members a fold trains: one, N seeds, or one per inner fold (k-fold ensembles)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import Recipe
from ..utils.files import atomic_write_json, atomic_write_npy

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # pragma: no cover
    from ..data.split import Fold
    from ..pipeline import Dataset


@dataclass
class MemberPlan:
    index: int
    recipe: Recipe
    train: np.ndarray
    val: np.ndarray
    seed: int
    describe: str
    out_of_fold: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    def extra(self, ds: "Dataset", folder: Path, info: dict[str, Any]) -> dict[str, Any]:
        """After training: k-fold members score their held-out inner fold (out-of-fold predictions)."""
        if not self.out_of_fold or self.val.size == 0:
            return {}
        from ..data.loader import SegmentTable
        from ..inference.members import load_member
        from ..pipeline import member_segment_probs

        member = load_member(folder.parents[3], {"dir": str(folder.relative_to(folder.parents[3])),
                                                 "kind": info.get("kind", "net")},
                             self.recipe, len(ds.labels), batch_size=self.recipe.eval.batch_size)
        table = SegmentTable.build(ds.store, self.val, self.recipe.segment, self.recipe.audio.sample_rate)
        probs = member_segment_probs([member], ds, table, self.recipe)[0]
        atomic_write_npy(folder / "oof_probs.npy", probs)
        atomic_write_npy(folder / "oof_files.npy", table.files)
        acc = float((probs.argmax(1) == ds.label_index[table.files]).mean()) if len(table) else None
        return {"oof_segment_accuracy": acc, "oof_files": int(self.val.size)}


def plan_members(recipe: Recipe, ds: "Dataset", fold: "Fold") -> list[MemberPlan]:
    e = recipe.ensemble
    if e.kind == "kfold" and e.members > 1:
        from ..data.split import stratified_group_kfold

        pool = np.concatenate([fold.train, fold.val])
        labels = [it.label for it in ds.manifest.items]
        groups = [it.group for it in ds.manifest.items]
        plans = []
        for k, (tr, va) in enumerate(stratified_group_kfold(labels, groups, pool, e.members, recipe.seed)):
            plans.append(MemberPlan(k, recipe, tr, va, recipe.seed + 1000 * k,
                                    f"inner fold {k + 1}/{e.members}", out_of_fold=True))
        return plans
    return [MemberPlan(m, recipe, fold.train, fold.val, recipe.seed + 1000 * m,
                       f"seed {recipe.seed + 1000 * m}") for m in range(e.members)]


def fit_planned_member(plan: MemberPlan, ds: "Dataset", fold: "Fold", folder: Path) -> None:
    """Train one planned member into ``folder``; ``member.json``, written last, marks it finished."""
    from ..pipeline import fit_member

    log.info("fold %s: training member %d (%s)", fold.name, plan.index, plan.describe)
    info = fit_member(plan.recipe, ds, fold, plan.train, plan.val, folder, plan.seed)
    info.update(plan.extra(ds, folder, info))
    info.update(model=plan.recipe.model.name, index=plan.index, fold=fold.name)
    atomic_write_json(folder / "member.json", info)  # written last: its presence means the member is finished
