"""The local engine: tasks one after another in this process (each may use the machine's cores)."""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..utils.progress import progress

if TYPE_CHECKING:  # pragma: no cover
    from . import TaskOutcome

log = logging.getLogger(__name__)


class LocalEngine:
    name = "local"

    def map(self, fn: Callable[..., Any], tasks: Sequence[tuple[Any, ...]], *, desc: str = "",
            unit: str = "task", weights: Sequence[int] | None = None, initial: int = 0, show: bool = True,
            gpus: int = 0) -> list[TaskOutcome]:
        from . import FATAL, TaskOutcome, describe_error

        weights = list(weights) if weights is not None else [1] * len(tasks)
        outcomes: list[TaskOutcome] = []
        with progress(total=initial + sum(weights), initial=initial, desc=desc, unit=unit, disable=not show) as bar:
            for task, weight in zip(tasks, weights):
                outcome = TaskOutcome(task)
                for attempt in (1, 2):
                    try:
                        outcome = TaskOutcome(task, fn(*task))
                        break
                    except FATAL:
                        raise
                    except Exception as exc:  # reported, and the other tasks go on
                        outcome = TaskOutcome(task, error=describe_error(exc))
                        log.warning("%s task %d failed (attempt %d of 2): %s", desc, len(outcomes), attempt,
                                    outcome.error, exc_info=log.isEnabledFor(logging.DEBUG))
                outcomes.append(outcome)
                bar.update(weight)
        return outcomes

    def has_gpus(self) -> bool:
        return False  # one process: a task's own settings (train.devices) decide its devices

    def close(self) -> None:
        pass
