"""Decoding and caching a dataset ahead of training (``earmark prepare``)."""
from __future__ import annotations

from pathlib import Path

from ..config import Recipe, load_recipe
from ..data.dataset import Dataset, load_dataset


def prepare(data: str | Path, recipe: str | Recipe = "default", overrides: list[str] | None = None,
            group: str | None = None, show_progress: bool = True) -> tuple[Recipe, Dataset]:
    """Discover and decode ``data`` into the prepared store (resumable); returns the recipe and the dataset."""
    rec = load_recipe(recipe, overrides) if isinstance(recipe, str) else recipe
    if group:
        rec = rec.model_copy(update={"data": rec.data.model_copy(update={"group": group})})
    return rec, load_dataset(data, rec, show_progress=show_progress)
