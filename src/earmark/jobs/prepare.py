"""Decoding and caching a dataset ahead of training (``earmark prepare``)."""
from __future__ import annotations

from pathlib import Path

from ..config import Recipe, load_recipe
from ..data.dataset import Dataset, load_dataset


def prepare(data: str | Path, recipe: str | Recipe = "default", overrides: list[str] | None = None,
            group: str | None = None, show_progress: bool = True, engine: str | None = None,
            address: str | None = None) -> tuple[Recipe, Dataset]:
    """Discover and decode ``data`` into the prepared store (resumable), here or on an engine (``local``,
    ``ray`` at ``address``); returns the recipe and the dataset."""
    rec = load_recipe(recipe, overrides) if isinstance(recipe, str) else recipe
    if group:
        rec = rec.model_copy(update={"data": rec.data.model_copy(update={"group": group})})
    from ..engines import get_engine

    return rec, load_dataset(data, rec, show_progress=show_progress, engine=get_engine(engine, address))
