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

import csv
import hashlib
import logging
import platform
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, cast

import yaml

from .config import Recipe, recipe_from_dict
from .errors import ConfigError, RunError
from .utils.files import atomic_write_json, atomic_write_text, read_json

log = logging.getLogger(__name__)


Voting = Literal["soft", "hard"]


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


@dataclass(frozen=True)
class MemberEntry:
    """One voting member, as ``members.json`` lists it (defaults fill fields that old run folders lack)."""

    dir: str  # the member's folder, relative to the run
    kind: str = "net"  # "net" (a network) or "classical" (a scikit-learn pipeline)
    model: str | None = None  # None: the run's model.name
    fold: str | None = None
    seed: int | None = None
    val_score: float | None = None
    weight: float = 1.0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MemberEntry":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        values["dir"] = str(values.get("dir") or "")
        values["kind"] = str(values.get("kind") or "net")
        values["weight"] = float(values["weight"]) if values.get("weight") is not None else 1.0
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunInfo:
    """``run.json``: the run's status and what it was trained on (``extra``: every other key, kept as is)."""

    status: str = "unknown"
    data: str | None = None
    recipe: str | None = None
    seed: int | None = None
    started: str | None = None
    finished: str | None = None
    attempts: int = 0
    folds: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    n_members: int | None = None
    best_variant: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunInfo":
        known = {f.name for f in fields(cls)} - {"extra"}
        values: dict[str, Any] = {k: v for k, v in d.items() if k in known}
        for key in ("folds", "labels"):
            values[key] = tuple(values.get(key) or ())
        values["attempts"] = int(values.get("attempts") or 0)
        values.setdefault("status", "unknown")
        return cls(**values, extra={k: v for k, v in d.items() if k not in known})


@dataclass
class RunFolder:
    path: Path
    _members: tuple[Voting, list[MemberEntry]] | None = field(default=None, init=False, repr=False, compare=False)

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

    def run_info(self) -> RunInfo:
        """``run.json`` as a :class:`RunInfo` (an empty one, status ``unknown``, when it is missing)."""
        return RunInfo.from_dict(self.info())

    def write_info(self, **updates: Any) -> dict[str, Any]:
        info = self.info()
        info.update(updates)
        atomic_write_json(self.file("run.json"), info)
        return info

    def start(self, recipe: Recipe, data: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        existing = self.file("config.yaml")
        if existing.is_file():
            try:
                old: Recipe | None = load_run_recipe(self.path)
            except ConfigError:  # settings that can no longer load: only reusable if nothing was trained
                old = None
            if old is None or old.model_dump() != recipe.model_dump():
                if self.trained_anything():
                    raise RunError(
                        f"{self.path} already holds a run with different settings; resume it with the same "
                        "recipe and overrides, or choose another --out (a folder whose attempt failed before "
                        "any member finished training is reused)")
                log.warning("%s: its earlier attempt ended before any member finished training; starting it "
                            "again with the new settings", self.path)
                for sub in ("folds", "variants"):  # partial work of the other settings (checkpoints, logs)
                    shutil.rmtree(self.path / sub, ignore_errors=True)
        atomic_write_text(existing, recipe.to_yaml())
        info = self.info()
        self.write_info(
            status="running", data=str(data), recipe=recipe.name, seed=recipe.seed, versions=versions(),
            started=info.get("started") or time.strftime("%Y-%m-%dT%H:%M:%S"),
            attempts=int(info.get("attempts", 0)) + 1,
        )

    def trained_anything(self) -> bool:
        """True once any member of this run (or of one of its variants) has finished training."""
        return any(self.path.glob("folds/*/members/*/member.json")) or any(
            self.path.glob("variants/*/**/member.json"))

    # --- contents
    def labels(self) -> list[str]:
        return list(read_json(self.file("labels.json")))

    def recipe(self) -> Recipe:
        return load_run_recipe(self.path)

    def _read_members(self) -> tuple[Voting, list[MemberEntry]]:
        if self._members is None:
            p = self.file("members.json")
            if not p.is_file():
                raise RunError(f"{self.path} is incomplete: members.json is missing")
            data = read_json(p)
            if isinstance(data, list):  # the oldest layout: a bare list of members
                data = {"members": data}
            if not isinstance(data, dict) or not isinstance(data.get("members"), list):
                raise RunError(f"{p}: not a list of members; restore it or train the run again")
            voting = str(data.get("voting") or self.recipe().ensemble.voting)
            if voting not in ("soft", "hard"):
                raise RunError(f"{p}: unknown voting {voting!r}; it must be soft or hard")
            self._members = (cast(Voting, voting), [MemberEntry.from_dict(e) for e in data["members"]])
        return self._members

    def members(self) -> list[MemberEntry]:
        """The voting members (``members.json``, read once per :class:`RunFolder`)."""
        return list(self._read_members()[1])

    def voting(self) -> Voting:
        """How the members vote: ``soft`` or ``hard`` (the recipe's ``ensemble.voting`` if the folder does not say)."""
        return self._read_members()[0]

    def write_members(self, voting: Voting, members: list[MemberEntry]) -> None:
        atomic_write_json(self.file("members.json"), {"voting": voting, "members": [m.to_dict() for m in members]})
        self._members = (voting, list(members))

    def metrics(self) -> dict[str, Any]:
        """``metrics.json``: the run's scores."""
        p = self.file("metrics.json")
        if not p.is_file():
            raise RunError(f"{self.path} has no metrics.json; finish the run with the same `earmark train` command")
        return dict(read_json(p))

    def splits(self) -> list[dict[str, str]]:
        """``splits.csv`` rows: path, label, group and, per fold, the side (train/val/test/unused)."""
        with open(self.file("splits.csv"), newline="") as f:
            return list(csv.DictReader(f))

    def test_paths(self, fold: str) -> set[str]:
        """The files one fold was tested on."""
        return {row["path"] for row in self.splits() if row.get(fold) == "test"}

    def digest(self) -> str:
        """A hash of what the run predicts with (settings, labels, members, their weights and weights files)."""
        h = hashlib.sha256()
        for name in ("config.yaml", "labels.json", "members.json"):
            h.update(self.file(name).read_bytes())
        for entry in self.members():
            weights = self.path / entry.dir / "model.safetensors"
            if weights.is_file():
                with open(weights, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
        return h.hexdigest()


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
