"""The singer-gender recipe on real songs: a tiny end-to-end run on a few MIR-1K clips, grouped by singer (the
shipped recipe answers zero-shot from the AudioSet network: it needs ../shared/weights)."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from earmark.config import load_recipe
from earmark.inference.predictor import Predictor
from earmark.jobs.train import train

from .conftest import shared_dataset
from .test_recipes import _check_run


@pytest.mark.slow
def test_singer_gender_recipe_on_mir1k_clips_leaves_a_singer_out(tmp_path: Path, weights_env: Path):
    data = shared_dataset("mir1k")
    recipe = load_recipe("singer-gender")
    run = train(data, tmp_path / "run", "singer-gender",
                ["train.loggers=[csv]", "data.workers=2", "data.max_files_per_class=12", "split.method=logo",
                 "split.max_folds=2"], group="singer", show_progress=False).path
    metrics = _check_run(run, members=2)  # one per fold
    assert metrics["track_accuracy"] >= 0.6  # two singers' clips, zero-shot (all 258 clips: 82 %; chance 50 %)
    with open(run / "splits.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    fold = next(k for k in rows[0] if k not in ("path", "label", "group"))
    test_groups = {r["group"] for r in rows if r[fold] == "test"}
    train_groups = {r["group"] for r in rows if r[fold] == "train"}
    assert len(test_groups) == 1 and not test_groups & train_groups  # one singer held out, never trained on
    assert load_recipe(str(run / "config.yaml")).audio == recipe.audio  # what the run hears travels with it
    clips = [data / r["path"] for r in rows[:2]]
    for r in Predictor(run).predict(clips):
        assert "error" not in r and r["label"] in ("female", "male")
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
