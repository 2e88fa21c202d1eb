"""The Ray engine: each task is a Ray task on a cluster's workers, or on a local Ray instance.

Ray is an optional extra (``pip install 'earmark[ray]'``). A task asks for one CPU, or ``gpus`` GPUs
when the cluster has GPUs; Ray retries it once (a raised error or a lost worker), then its error is
reported and the other tasks finish. Tasks read and write shared storage (the store under
``EARMARK_CACHE``, the run folder): every node must see the same paths.
"""
from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..utils.progress import progress

if TYPE_CHECKING:  # pragma: no cover
    from . import TaskOutcome

log = logging.getLogger(__name__)

INSTALL = "pip install 'earmark[ray]'"


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--engine ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on a ``HOST:PORT`` that nothing answers on (``ray.init`` would retry for minutes)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        return  # "auto", ray://..., or a form Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(f"--address {address}: no Ray cluster answers there ({exc.strerror or exc}); start one "
                          "with `ray start --head` on that machine, or leave --address out for a local "
                          "instance") from None


class RayEngine:
    name = "ray"

    def __init__(self, address: str | None = None) -> None:
        ray = import_ray()
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            if address:
                check_reachable(address)
            # EARMARK_* settings (cache, weights) travel to every worker; the dashboard stays off.
            env = {k: v for k, v in os.environ.items() if k.startswith("EARMARK_")}
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING, runtime_env={"env_vars": env} if env else None)
            except Exception as exc:  # Ray raises ConnectionError, TimeoutError or its own errors here
                if not address:
                    raise
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                raise ConfigError(f"--address {address}: no Ray cluster answered ({first}); start one with "
                                  "`ray start --head` or leave --address out for a local instance") from None
            self._started = True
        elif address:
            log.info("Ray is already initialised in this process; --address %s is not used", address)

    def has_gpus(self) -> bool:
        return float(self._ray.cluster_resources().get("GPU", 0)) >= 1

    def map(self, fn: Callable[..., Any], tasks: Sequence[tuple[Any, ...]], *, desc: str = "",
            unit: str = "task", weights: Sequence[int] | None = None, initial: int = 0, show: bool = True,
            gpus: int = 0) -> list[TaskOutcome]:
        from . import FATAL, TaskOutcome, describe_error

        ray = self._ray
        weights = list(weights) if weights is not None else [1] * len(tasks)
        remote = ray.remote(fn).options(num_cpus=1, num_gpus=gpus if self.has_gpus() else 0, max_retries=1,
                                        retry_exceptions=True)
        refs = [remote.remote(*task) for task in tasks]
        position = {ref: i for i, ref in enumerate(refs)}
        outcomes: list[TaskOutcome | None] = [None] * len(tasks)
        pending = list(refs)
        with progress(total=initial + sum(weights), initial=initial, desc=desc, unit=unit, disable=not show) as bar:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    i = position[ref]
                    try:
                        outcomes[i] = TaskOutcome(tasks[i], ray.get(ref))
                    except ray.exceptions.RayTaskError as exc:  # the task raised (twice)
                        cause = getattr(exc, "cause", None) or exc
                        if isinstance(cause, FATAL):
                            for other in pending:
                                ray.cancel(other)
                            raise cause from None
                        outcomes[i] = TaskOutcome(tasks[i], error=describe_error(cause))
                    except ray.exceptions.RayError as exc:  # its worker died (twice), or the node was lost
                        outcomes[i] = TaskOutcome(tasks[i], error=describe_error(exc))
                    if outcomes[i].error:  # type: ignore[union-attr]
                        log.warning("%s task %d failed after a retry: %s", desc, i, outcomes[i].error)  # type: ignore[union-attr]
                    bar.update(weights[i])
        return [o for o in outcomes if o is not None]

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False
