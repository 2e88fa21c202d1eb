"""End to end on real speech: a subset of FSDD (spoken digits), trained, scored, predicted, evaluated."""
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import earmark
from earmark.cli import app

from .conftest import shared_dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fsdd_subset_run(tmp_path_factory) -> tuple[Path, Path]:
    data = shared_dataset("fsdd")
    out = tmp_path_factory.mktemp("fsdd") / "run"
    runner = CliRunner()
    args = ["train", str(data), "--out", str(out)]
    # the official split (2700 training files), 5 epochs of a plain cosine decay; mixup and SpecAugment,
    # which pay off over long training, are off
    for s in ["train.epochs=5", "train.schedule.name=cosine", "features.hop_ms=20", "train.loggers=[csv]",
              "augment.mixup.p=0", "augment.specaugment.p=0", "augment.warp.p=0"]:
        args += ["--set", s]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return data, out


def test_fsdd_subset_trains_far_above_chance(fsdd_subset_run):
    data, out = fsdd_subset_run
    m = json.loads((out / "metrics.json").read_text())
    assert m["split_method"] == "split"  # the manifest's official split column was used
    assert m["n_files"] == 3000 and m["labels"] == [str(d) for d in range(10)]
    assert m["folds"]["split"]["n_test_tracks"] == 300  # recordings 0-4 of every speaker and digit
    assert m["track_accuracy"] >= 0.75, m["track_accuracy"]  # chance is 0.1
    assert m["track_macro_f1"] >= 0.7


def test_fsdd_predict_and_evaluate_on_real_files(fsdd_subset_run, tmp_path):
    data, out = fsdd_subset_run
    files = [data / "recordings" / f"{d}_theo_{i}.wav" for d in (3, 7) for i in (1, 2)]  # test recordings
    labels = [r["label"] for r in earmark.predict(out, files)]
    assert sum(got == want for got, want in zip(labels, ["3", "3", "7", "7"])) >= 3
    m = earmark.evaluate(out, data, tmp_path / "eval", show_progress=False)
    assert m["n_test_tracks"] == 3000 and m["track_accuracy"] >= 0.75
