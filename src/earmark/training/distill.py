"""Distillation's training side: the soft targets a student of one fold learns from.

For every fold of the teacher run the student trains on the same training files, with targets from
*that fold's* teacher members (so no fold's test files ever inform its student). The job itself
(``earmark distill``) is :mod:`earmark.jobs.distill`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ..config import Recipe
from ..errors import ConfigError, RunError
from ..run import open_run

if TYPE_CHECKING:  # pragma: no cover
    from ..data.dataset import Dataset
    from ..data.loader import SegmentTable
    from ..data.split import Fold


def teacher_for_fold(recipe: Recipe, ds: "Dataset", fold: "Fold") -> Callable[["SegmentTable"], np.ndarray]:
    """A function giving the teacher fold-ensemble's probabilities for the student's training segments."""
    from ..ensemble import vote
    from ..inference.members import load_member, member_segment_probs

    assert recipe.distill.teacher
    teacher = open_run(recipe.distill.teacher)
    t_recipe = teacher.recipe()
    for section in ("audio", "segment"):
        if getattr(t_recipe, section) != getattr(recipe, section):
            raise ConfigError(f"the student's {section} settings differ from the teacher's ({teacher.path}); "
                              "a student must see the same segments")
    if teacher.labels() != ds.labels:
        raise RunError(f"teacher classes {teacher.labels()} differ from the data's {ds.labels}")
    entries = [e for e in teacher.members() if e.fold == fold.name]
    if not entries:
        raise RunError(f"teacher {teacher.path} has no fold {fold.name!r}: use the same split settings")
    ours = {str(ds.manifest.items[int(i)].path) for i in fold.test}
    if teacher.test_paths(fold.name) != ours:
        raise RunError(f"fold {fold.name}: the teacher was tested on other files; distill on the teacher's data "
                       "with its split settings")
    members = [load_member(teacher.path, e, t_recipe, len(ds.labels), batch_size=recipe.eval.batch_size)
               for e in entries]
    weights = [e.weight for e in entries]
    voting = teacher.voting()

    def soft_targets(table: "SegmentTable") -> np.ndarray:
        return vote(member_segment_probs(members, ds, table, t_recipe), voting, weights).astype(np.float32)

    return soft_targets
