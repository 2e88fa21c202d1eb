"""Engines: where independent tasks run, behind one small interface.

``local`` runs the tasks one after another in this process; ``ray`` runs each as a Ray task on a
cluster's workers (``--address``) or on a local Ray instance. Both show one progress bar over all tasks,
retry a failed task once, and report the tasks that failed twice with their errors while the others
finish (:class:`TaskOutcome`). A :class:`~earmark.errors.ConfigError` (a setting that fails every task
alike) stops the map at once instead.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import ConfigError
from .local import LocalEngine

ENGINES = ("local", "ray")
FATAL: tuple[type[BaseException], ...] = (ConfigError,)


@dataclass
class TaskOutcome:
    """What became of one task: its return value, or the error of its last attempt."""

    task: tuple[Any, ...]
    value: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Engine(Protocol):
    name: str

    def map(self, fn: Callable[..., Any], tasks: Sequence[tuple[Any, ...]], *, desc: str = "",
            unit: str = "task", weights: Sequence[int] | None = None, initial: int = 0, show: bool = True,
            gpus: int = 0) -> list[TaskOutcome]:
        """Run ``fn(*task)`` for every task (``gpus`` per task where the engine has GPUs); outcomes in
        task order. ``weights`` (default 1 each) and ``initial`` (work already done) size the bar."""
        ...

    def has_gpus(self) -> bool: ...

    def close(self) -> None: ...


def get_engine(name: str | None, address: str | None = None) -> Engine:
    """The engine called ``name`` (``local`` when None); ``address`` is the Ray cluster to join."""
    if name in (None, "local"):
        if address:
            raise ConfigError(f"--address {address} is for --engine ray; the local engine runs on this machine")
        return LocalEngine()
    if name == "ray":
        from .ray_engine import RayEngine

        return RayEngine(address)
    raise ConfigError(f"unknown engine {name!r}: choose one of {', '.join(ENGINES)}")


def failure_lines(failures: Sequence[tuple[str, str | None]]) -> str:
    """One indented line per failed task: what it was, and its error."""
    return "\n".join(f"  {what}: {error}" for what, error in failures)


def describe_error(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


__all__ = ["ENGINES", "FATAL", "Engine", "LocalEngine", "TaskOutcome", "describe_error", "failure_lines",
           "get_engine"]
