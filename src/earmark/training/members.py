"""A fold's members: which ones it trains (one, N seeds, or one per inner fold), fitting them, their weights."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import Recipe
from ..errors import ConfigError
from ..models.registry import get_spec
from ..run import MemberEntry
from ..utils.files import atomic_write_json, atomic_write_npy, read_json

if TYPE_CHECKING:  # pragma: no cover
    from ..data.dataset import Dataset
    from ..data.split import Fold
    from ..run import RunFolder

log = logging.getLogger(__name__)


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
        from ..inference.members import load_member, member_segment_probs

        run_path = folder.parents[3]
        entry = MemberEntry(str(folder.relative_to(run_path)), info.get("kind", "net"))
        member = load_member(run_path, entry, self.recipe, len(ds.labels), batch_size=self.recipe.eval.batch_size)
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


def fit_member(recipe: Recipe, ds: "Dataset", fold: "Fold", train: np.ndarray, val: np.ndarray, folder: Path,
               seed: int) -> dict[str, Any]:
    """Train one member into ``folder`` (weights + member files); returns its fit information."""
    spec = get_spec(recipe.model.name)
    num_classes = len(ds.labels)
    if spec.family == "probe":  # frozen pretrained network + fitted head (models/probe.py)
        from .probe import fit_probe

        return {"kind": "probe", **fit_probe(recipe, ds.store, ds.label_index, train, val, folder, seed, num_classes)}
    if spec.is_deep:
        from ..inference.members import save_net
        from .fit import fit_network

        teacher = None
        if recipe.distill.teacher:
            from .distill import teacher_for_fold

            teacher = teacher_for_fold(recipe, ds, fold)
        result = fit_network(recipe, list(ds.labels), ds.store, ds.label_index, train, val, folder, seed, teacher)
        save_net(result.net, folder / "model.safetensors")
        return {"kind": "net", **result.info}
    if recipe.distill.teacher:
        raise ConfigError(f"distillation trains networks; {recipe.model.name} is a classical model")
    from .classical import fit_classical

    return {"kind": "classical", **fit_classical(recipe, ds.store, ds.label_index, train, val, folder, seed,
                                                 num_classes)}


def fit_planned_member(plan: MemberPlan, ds: "Dataset", fold: "Fold", folder: Path) -> None:
    """Train one planned member into ``folder``; ``member.json``, written last, marks it finished."""
    log.info("fold %s: training member %d (%s)", fold.name, plan.index, plan.describe)
    info = fit_member(plan.recipe, ds, fold, plan.train, plan.val, folder, plan.seed)
    info.update(plan.extra(ds, folder, info))
    info.update(model=plan.recipe.model.name, index=plan.index, fold=fold.name)
    atomic_write_json(folder / "member.json", info)  # written last: its presence means the member is finished


def train_members(recipe: Recipe, run: "RunFolder", ds: "Dataset", fold: "Fold") -> list[MemberEntry]:
    """Train (or reuse) every member of one fold; returns their ``members.json`` entries."""
    entries = []
    for plan in plan_members(recipe, ds, fold):
        folder = run.member_dir(fold.name, plan.index)
        done = folder / "member.json"
        if not done.is_file():
            fit_planned_member(plan, ds, fold, folder)
        info = read_json(done)
        entries.append(MemberEntry(str(folder.relative_to(run.path)), info.get("kind", "net"), info.get("model"),
                                   fold.name, info.get("seed"), info.get("best_score"), 1.0))
    return entries


def member_weights(recipe: Recipe, entries: list[MemberEntry]) -> list[float]:
    """Equal weights, or (``ensemble.weighted``) each member's validation accuracy/score."""
    if not recipe.ensemble.weighted:
        return [1.0] * len(entries)
    if all(e.val_score is None for e in entries):
        log.warning("ensemble.weighted=true but the members have no validation score (split.val_size=0): "
                    "they vote with equal weights")
    scores = []
    for e in entries:
        s = e.val_score
        if s is None:
            scores.append(1.0)
        elif recipe.train.monitor == "val_loss":
            scores.append(float(np.exp(-s)))  # lower loss, higher weight
        else:
            scores.append(max(float(s), 1e-6))
    return scores
