"""Ensemble members as engine tasks: every (fold, member) pair of a run is one task.

:func:`train_member_task` is what a worker runs: it re-loads the dataset from the prepared store (on
shared storage), plans the fold's members exactly as a sequential run does, and trains one of them
into ``folds/<fold>/members/<k>/`` with its log in ``task.log`` there; a member whose ``member.json``
exists is finished and skipped. :func:`train_on_engine` sends every unfinished pair to the engine and
records the pairs that failed twice; the per-fold scoring and the summary then run on the driver as
they do for a sequential run, finding every member finished.
"""
from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Recipe, recipe_from_dict
from ..data.store import cache_root
from ..errors import RunError
from ..run import RunFolder
from ..utils.files import atomic_write_text
from . import Engine, failure_lines

if TYPE_CHECKING:  # pragma: no cover
    from ..data.dataset import Dataset
    from ..data.split import Fold

log = logging.getLogger(__name__)

#: a folder where a test arms a worker's death: a file ``kill-<fold>-<member>`` there makes the task for
#: that pair end its process (``os._exit``) once, mid-task, as a lost node would
FAULTS_ENV = "EARMARK_TEST_FAULTS"


@contextlib.contextmanager
def _task_log(path: Path) -> Iterator[None]:
    """Everything logged while the task runs also goes to ``path``."""
    root = logging.getLogger()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    level = root.level
    root.addHandler(handler)
    root.setLevel(min(level, logging.INFO) if level else logging.INFO)
    try:
        yield
    except BaseException:
        logging.getLogger(__name__).exception("task failed")
        raise
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()


def _die_if_armed(fold: str, member: int) -> None:
    folder = os.environ.get(FAULTS_ENV)
    if folder:
        arm = Path(folder) / f"kill-{fold}-{member}"
        with contextlib.suppress(FileNotFoundError):
            arm.unlink()
            os._exit(17)


def train_member_task(recipe: dict[str, Any], data: str, run_path: str, fold: str, member: int) -> dict[str, Any]:
    """Train member ``member`` of fold ``fold`` of the run at ``run_path`` (skipped when finished)."""
    from ..data.dataset import dataset_folds, load_dataset
    from ..training.members import fit_planned_member, plan_members

    rec = recipe_from_dict(recipe)
    folder = RunFolder(Path(run_path)).member_dir(fold, member)
    if (folder / "member.json").is_file():
        return {"fold": fold, "member": member, "trained": False}
    folder.mkdir(parents=True, exist_ok=True)
    with _task_log(folder / "task.log"):
        log.info("fold %s member %d: loading the prepared dataset %s", fold, member, data)
        ds = load_dataset(data, rec, show_progress=False)
        folds = {f.name: f for f in dataset_folds(ds, rec)}
        if fold not in folds:
            raise RunError(f"{run_path}: this worker finds no fold {fold!r} in {data} (folds: {sorted(folds)}); "
                           "do all nodes see the same data?")
        plan = plan_members(rec, ds, folds[fold])[member]
        _die_if_armed(fold, member)
        fit_planned_member(plan, ds, folds[fold], folder)
    return {"fold": fold, "member": member, "trained": True}


def train_on_engine(engine: Engine, recipe: Recipe, run: RunFolder, data: str | Path, ds: Dataset,
                    folds: list[Fold], show_progress: bool = True) -> None:
    """Train every unfinished member of every fold through ``engine``; raise :class:`RunError` after
    recording (``run.json`` ``failures``, ``report.md``) the members that failed twice."""
    from ..training.members import plan_members

    pairs = [(fold.name, plan.index) for fold in folds for plan in plan_members(recipe, ds, fold)]
    todo = [p for p in pairs if not (run.member_dir(*p) / "member.json").is_file()]
    # Workers see the same paths (shared storage): absolute ones, and the driver's cache folder.
    sent = recipe.model_copy(update={"data": recipe.data.model_copy(
        update={"cache_dir": str(cache_root(recipe.data.cache_dir).resolve())})}).model_dump(mode="json")
    tasks = [(sent, str(Path(data).resolve()), str(run.path.resolve()), fold, k) for fold, k in todo]
    gpus = recipe.train.devices if isinstance(recipe.train.devices, int) and recipe.train.devices > 1 else 1
    log.info("training %d of %d members on the %s engine", len(todo), len(pairs), engine.name)
    outcomes = engine.map(train_member_task, tasks, desc="members", unit="member", initial=len(pairs) - len(todo),
                          show=show_progress, gpus=gpus if recipe.train.accelerator != "cpu" else 0)
    failures = [{"fold": o.task[3], "member": o.task[4], "error": o.error} for o in outcomes if not o.ok]
    run.write_info(failures=failures)
    if failures:
        _write_failure_report(run, failures, len(pairs))
        raise RunError(f"{run.path}: {len(failures)} of {len(pairs)} member(s) failed twice:\n"
                       + failure_lines([(f"fold {f['fold']} member {f['member']}", f["error"]) for f in failures])
                       + "\n(logs: folds/<fold>/members/<k>/task.log). Run the same command again to train "
                         "only the unfinished members.")


def _write_failure_report(run: RunFolder, failures: list[dict[str, Any]], total: int) -> None:
    rows = "\n".join(f"| {f['fold']} | {f['member']} | {str(f['error']).replace('|', '/')} | "
                     f"folds/{f['fold']}/members/{f['member']}/task.log |" for f in failures)
    atomic_write_text(run.file("report.md"), (
        f"# Run incomplete: {len(failures)} of {total} members failed\n\n"
        "Each was tried twice. The other members finished and are kept.\n\n"
        "| fold | member | error | log |\n|---|---|---|---|\n"
        f"{rows}\n\n"
        "Run the same `earmark train` command again (same data, recipe, overrides and `--out`): finished "
        "members are skipped and only these are trained; the scores and the summary follow.\n"))
