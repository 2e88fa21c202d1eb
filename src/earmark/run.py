"""The run folder: everything needed to predict, and the scores, in one place.

    RUN/
      run.json           status (running/complete), versions, seeds, timings, data summary
      config.yaml        the resolved recipe: audio, segment, feature, model and training settings
      labels.json        class names, in output order
      members.json       the models that vote, with their weights (written when training is complete)
      skipped.csv        files passed over, with the reason
      splits.csv         which side of each split every file was on
      metrics.json  report.md  confusion_matrix.{png,csv}  training_curves.png  test_predictions.csv
      folds/<fold>/      one per split: test scores and members/<k>/ (weights, logs, checkpoints)

Every file is written atomically. A run whose ``run.json`` does not say ``complete`` is never loaded for
prediction: running the same ``train`` command again finishes it.
"""
from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .config import Recipe, recipe_from_dict
from .errors import RunError
from .utils.files import atomic_write_json, atomic_write_text, read_json


def versions() -> dict[str, str]:
    import numpy
    import torch

    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__}
    from . import __version__

    out["earmark"] = __version__
    for name in ("lightning", "timm", "sklearn", "onnxruntime"):
        try:
            mod = __import__(name)
            out[name] = getattr(mod, "__version__", "?")
        except Exception:  # noqa: BLE001 - optional packages
            pass
    return out


@dataclass
class RunFolder:
    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    # --- paths
    def file(self, name: str) -> Path:
        return self.path / name

    def fold_dir(self, fold: str) -> Path:
        return self.path / "folds" / fold

    def member_dir(self, fold: str, index: int) -> Path:
        return self.fold_dir(fold) / "members" / str(index)

    # --- status
    def status(self) -> str:
        p = self.file("run.json")
        if not p.is_file():
            return "missing"
        return str(read_json(p).get("status", "unknown"))

    def info(self) -> dict[str, Any]:
        p = self.file("run.json")
        return read_json(p) if p.is_file() else {}

    def write_info(self, **updates: Any) -> dict[str, Any]:
        info = self.info()
        info.update(updates)
        atomic_write_json(self.file("run.json"), info)
        return info

    def start(self, recipe: Recipe, data: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        existing = self.file("config.yaml")
        if existing.is_file():
            old = load_run_recipe(self.path)
            if old.model_dump() != recipe.model_dump():
                raise RunError(
                    f"{self.path} already holds a run with different settings; resume it with the same "
                    "recipe and overrides, or choose another --out"
                )
        atomic_write_text(existing, recipe.to_yaml())
        info = self.info()
        self.write_info(
            status="running", data=str(data), recipe=recipe.name, seed=recipe.seed, versions=versions(),
            started=info.get("started") or time.strftime("%Y-%m-%dT%H:%M:%S"),
            attempts=int(info.get("attempts", 0)) + 1,
        )

    # --- contents
    def labels(self) -> list[str]:
        return list(read_json(self.file("labels.json")))

    def recipe(self) -> Recipe:
        return load_run_recipe(self.path)


def load_run_recipe(path: Path) -> Recipe:
    p = Path(path) / "config.yaml"
    if not p.is_file():
        raise RunError(f"{path} is not an earmark run (no config.yaml)")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))  # plain YAML only: no Python objects are built
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise RunError(f"{p}: not plain YAML ({first}); it was not loaded. Restore the run's config.yaml or "
                       "train again") from None
    if not isinstance(data, dict):
        raise RunError(f"{p}: not a recipe (a mapping of sections); restore it or train again")
    return recipe_from_dict(data, str(p))


def open_run(path: str | Path) -> RunFolder:
    """A finished run folder, or a clear error about why it cannot be used."""
    run = RunFolder(Path(path))
    status = run.status()
    if status == "missing":
        raise RunError(f"{path} is not an earmark run folder (no run.json); train one with `earmark train`")
    if status != "complete":
        raise RunError(f"{path} is not finished (status: {status}); run the same `earmark train` command again "
                       "to resume it")
    best = run.info().get("best_variant")
    if best:  # a run of several variants predicts with the one chosen on validation data
        return open_run(run.path / "variants" / best)
    for name in ("config.yaml", "labels.json", "members.json"):
        if not run.file(name).is_file():
            raise RunError(f"{path} is incomplete: {name} is missing")
    return run
