"""Loading the members of a run and running them on waveform segments."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from ..config import Recipe
from ..errors import RunError
from ..models.net import EarmarkNet, build_net
from ..utils.files import atomic_write, read_json


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


def load_member(run_path: Path, entry: dict[str, Any], recipe: Recipe, num_classes: int,
                device: str = "cpu", batch_size: int = 64) -> Any:
    """One member from its ``members.json`` entry."""
    folder = run_path / str(entry.get("dir", ""))
    if not entry.get("dir") or not folder.resolve().is_relative_to(Path(run_path).resolve()):
        raise RunError(f"{run_path / 'members.json'}: member folder {entry.get('dir')!r} is not inside the "
                       "run")
    kind = entry.get("kind", "net")
    weight = float(entry.get("weight", 1.0))
    if kind == "net":
        member_recipe = recipe if not entry.get("model") else recipe.model_copy(
            update={"model": recipe.model.model_copy(update={"name": entry["model"]})})
        net = load_net(member_recipe, num_classes, folder / "model.safetensors", device)
        return NetMember(net, batch_size, weight, entry["dir"])
    if kind == "classical":
        from ..models.classical import ClassicalMember

        return ClassicalMember.load(folder, recipe, weight=weight, name=entry["dir"])
    if kind == "probe":
        from ..models.probe import ProbeMember

        return ProbeMember.load(folder, recipe, weight=weight, name=entry["dir"])
    raise RunError(f"unknown member kind {kind!r} in {run_path / 'members.json'}")


def load_members(run_path: Path, recipe: Recipe, num_classes: int, device: str = "cpu",
                 batch_size: int = 64) -> list[Any]:
    entries = read_json(run_path / "members.json")["members"]
    if not entries:
        raise RunError(f"{run_path} has no trained members")
    return [load_member(run_path, e, recipe, num_classes, device, batch_size) for e in entries]
