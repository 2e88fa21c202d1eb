"""Loading the members of a run and running them on waveform segments."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from ..config import Recipe
from ..ensemble import with_tta
from ..errors import RunError
from ..models.net import EarmarkNet, build_net
from ..run import MemberEntry, RunFolder
from ..utils.files import atomic_write

if TYPE_CHECKING:  # pragma: no cover
    from ..data.dataset import Dataset
    from ..data.loader import SegmentTable


def save_net(net: EarmarkNet, path: Path) -> None:
    """Weights and statistics as safetensors (no pickled code), written atomically."""
    atomic_write(path, lambda p: save_model(net, str(p)))


def load_net(recipe: Recipe, num_classes: int, path: Path, device: str | torch.device = "cpu") -> EarmarkNet:
    net = build_net(recipe, num_classes)
    try:
        missing, unexpected = load_model(net, str(path), strict=False, device=str(device))
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:  # missing, not safetensors, damaged
        raise RunError(f"{path}: cannot load the member's weights ({str(exc)[:200]}); nothing in it was run. "
                       "Train the run again (or restore the file)") from None
    if missing or unexpected:
        raise RunError(f"{path} does not match model {recipe.model.name}: missing {sorted(missing)[:5]}, "
                       f"unexpected {sorted(unexpected)[:5]}")
    return net.to(device).eval()


@dataclass
class NetMember:
    """A trained network as an ensemble member."""

    net: EarmarkNet
    batch_size: int = 64
    weight: float = 1.0
    name: str = ""

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @torch.inference_mode()
    def predict_proba(self, waves: np.ndarray) -> np.ndarray:
        out = []
        for b in range(0, waves.shape[0], self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(waves[b: b + self.batch_size])).to(self.device)
            out.append(torch.softmax(self.net(x).float(), dim=1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def load_member(run_path: Path, entry: MemberEntry | dict[str, Any], recipe: Recipe, num_classes: int,
                device: str = "cpu", batch_size: int = 64) -> Any:
    """One member from its ``members.json`` entry (a :class:`MemberEntry`, or the entry as a dict)."""
    if isinstance(entry, dict):
        entry = MemberEntry.from_dict(entry)
    folder = run_path / entry.dir
    if not entry.dir or not folder.resolve().is_relative_to(Path(run_path).resolve()):
        raise RunError(f"{run_path / 'members.json'}: member folder {entry.dir!r} is not inside the run")
    if entry.kind == "net":
        member_recipe = recipe if not entry.model else recipe.model_copy(
            update={"model": recipe.model.model_copy(update={"name": entry.model})})
        net = load_net(member_recipe, num_classes, folder / "model.safetensors", device)
        return NetMember(net, batch_size, entry.weight, entry.dir)
    if entry.kind == "classical":
        from ..models.classical import ClassicalMember

        return ClassicalMember.load(folder, recipe, weight=entry.weight, name=entry.dir)
    if entry.kind == "probe":
        from ..models.probe import ProbeMember

        return ProbeMember.load(folder, recipe, weight=entry.weight, name=entry.dir)
    raise RunError(f"unknown member kind {entry.kind!r} in {run_path / 'members.json'}")


def load_members(run: RunFolder, recipe: Recipe, num_classes: int, device: str = "cpu",
                 batch_size: int = 64) -> list[Any]:
    """Every member of a run, ready to predict."""
    entries = run.members()
    if not entries:
        raise RunError(f"{run.path} has no trained members")
    return [load_member(run.path, e, recipe, num_classes, device, batch_size) for e in entries]


def member_segment_probs(members: list[Any], ds: "Dataset", table: "SegmentTable", recipe: Recipe,
                         chunk: int = 1024) -> np.ndarray:
    """Per-member segment probabilities ``(members, n, classes)``, read from the store in chunks."""
    e = recipe.ensemble
    out = []
    for m in members:
        parts = []
        for b in range(0, len(table), chunk):
            waves = table.read(ds.store, np.arange(b, min(b + chunk, len(table))))
            parts.append(with_tta(m.predict_proba, waves, e.tta, e.tta_shift))
        out.append(np.concatenate(parts) if parts else np.zeros((0, len(ds.labels))))
    return np.stack(out).astype(np.float32)
