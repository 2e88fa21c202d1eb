"""Optional experiment trackers: MLflow and SwanLab, used when installed, never required.

``train.loggers`` may name ``mlflow`` and ``swanlab`` beside ``csv`` and ``tensorboard``:

- ``mlflow``: Lightning's ``MLFlowLogger`` with a local SQLite store, ``RUN/mlflow.db`` (artifacts in
  ``RUN/mlartifacts``); browse with ``mlflow ui --backend-store-uri sqlite:///RUN/mlflow.db``. Install
  with ``pip install 'earmark[mlflow]'``. ``MLFLOW_TRACKING_URI`` set in the environment wins.
- ``swanlab``: SwanLab's own Lightning logger, logging under the member's ``logs/swanlab``; the mode is
  ``local`` unless ``SWANLAB_MODE`` says otherwise (``cloud`` needs ``swanlab login``).

A tracker that is not installed is reported once per process with how to install it, and the run goes on
with its other loggers. Each member of a run is one tracked run, named ``<recipe>/<fold>/m<member>``,
with every setting of the recipe as parameters.
"""
from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path
from typing import Any

from ..config import Recipe

log = logging.getLogger(__name__)

_warned: set[str] = set()

#: how to install each tracker
INSTALL = {"mlflow": "pip install 'earmark[mlflow]' (or pip install mlflow)", "swanlab": "pip install swanlab"}


def flat_settings(recipe: Recipe) -> dict[str, Any]:
    """The recipe as ``{"train.lr": 0.001, ...}`` (lists and dicts as text), for trackers' parameter tables."""
    out: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            out[prefix] = node if isinstance(node, (int, float, str, bool)) or node is None else str(node)

    walk("", recipe.model_dump(mode="json"))
    return out


def _installed(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def run_root(folder: Path) -> Path:
    """The run folder that holds a member folder (``RUN/folds/F/members/K``), or ``folder`` itself."""
    for parent in [folder, *folder.parents]:
        if (parent / "run.json").is_file():
            return parent
    return folder


def member_name(recipe: Recipe, folder: Path) -> str:
    parts = folder.parts
    if len(parts) >= 4 and parts[-2] == "members" and parts[-4] == "folds":
        return f"{recipe.name}/{parts[-3]}/m{parts[-1]}"
    return f"{recipe.name}/{folder.name}"


def mlflow_logger(recipe: Recipe, folder: Path) -> Any:
    from lightning.pytorch.loggers import MLFlowLogger

    root = run_root(folder)
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root / 'mlflow.db').resolve()}"
    logger = MLFlowLogger(experiment_name=f"earmark-{recipe.name}", run_name=member_name(recipe, folder),
                          tracking_uri=uri, artifact_location=(root / "mlartifacts").resolve().as_uri(),
                          tags={"earmark.run": str(root.resolve()), "earmark.model": recipe.model.name})
    logger.log_hyperparams(flat_settings(recipe))
    return logger


def swanlab_logger(recipe: Recipe, folder: Path) -> Any:
    from swanlab.integration.pytorch_lightning import SwanLabLogger

    logdir = folder / "logs" / "swanlab"
    logdir.mkdir(parents=True, exist_ok=True)
    return SwanLabLogger(project=f"earmark-{recipe.name}", experiment_name=member_name(recipe, folder),
                         description=recipe.description or None, config=flat_settings(recipe),
                         logdir=str(logdir), mode=os.environ.get("SWANLAB_MODE", "local"))


_BUILDERS = {"mlflow": ("mlflow", mlflow_logger), "swanlab": ("swanlab", swanlab_logger)}


def optional_logger(name: str, recipe: Recipe, folder: Path) -> Any:
    """The Lightning logger ``name`` for one member's fit, or ``None`` (with one warning) when not installed."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown tracker {name!r}; earmark knows {', '.join(_BUILDERS)}")
    module, build = _BUILDERS[name]
    if not _installed(module):
        if name not in _warned:
            _warned.add(name)
            log.warning("train.loggers asks for %s, but it is not installed: %s. Training goes on without it "
                        "(CSV/TensorBoard logs are kept as usual).", name, INSTALL[name])
        return None
    return build(recipe, Path(folder))
