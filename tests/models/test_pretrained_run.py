"""A fine-tuned mn04 run downstream: one ONNX graph from waveform to probabilities equal to PyTorch, and
distillation with mn04 as the teacher and as the student."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from earmark.audio.io import load_audio
from earmark.cli import app
from earmark.inference.onnx import OnnxModel, export_onnx
from earmark.inference.predictor import Predictor

from ..conftest import shared_weights
from .test_finetune_pretrained import esc10_subset

pytestmark = pytest.mark.slow
TINY = ["train.epochs=1", "segment.length_s=1.0", "segment.hop_s=1.0", "audio.max_duration_s=2.0",
        "train.batch_size=8", "train.loggers=[csv]", "data.workers=1"]


@pytest.fixture(scope="module")
def mn04_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mn04_as fine-tuned for one epoch on 3 ESC-10 classes x 3 clips (their first 2 s)."""
    import os

    import earmark

    os.environ["EARMARK_WEIGHTS"] = str(shared_weights("mn04_as_mAP_432.pt").parent)
    root = tmp_path_factory.mktemp("mn04")
    data = esc10_subset(root / "data", per_class=3, test_per_class=1)
    earmark.train(data, root / "run", "pretrained", TINY, show_progress=False)
    return root / "run"


def test_a_fine_tuned_mn04_exports_to_one_onnx_graph_equal_to_pytorch(mn04_run, tmp_path):
    out = export_onnx(mn04_run, tmp_path / "mn04.onnx")  # verified inside against PyTorch (1e-4)
    model, torch_predictor = OnnxModel(out), Predictor(mn04_run)
    assert model.sample_rate == 32000
    with open(mn04_run / "splits.csv", newline="") as fh:
        files = [r["path"] for r in csv.DictReader(fh)][:2]
    for f in files:
        wave = load_audio(f, 32000)
        ref = torch_predictor.predict_waveform(wave, 32000, segments=True)
        probs, seg_probs = model.run(wave[None, :])
        want = np.array([ref["probabilities"][lbl] for lbl in model.labels])
        assert np.abs(probs[0] - want).max() < 1e-4
        assert seg_probs.shape[1] == len(ref["segments"])
    # the centred front-end's reflect padding is in the graph: odd lengths and a batch run too
    x = np.random.default_rng(0).standard_normal((3, 32000 + 1234)).astype(np.float32) * 0.1
    probs, _ = model.run(x)
    assert probs.shape == (3, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_distill_with_mn04_as_teacher_and_as_student(mn04_run, tmp_path):
    student = tmp_path / "student"
    res = CliRunner().invoke(app, ["distill", str(mn04_run), "--out", str(student), "--model", "mn04",
                                   "--set", "model.pretrained=mn04_as", *[a for s in TINY for a in ("--set", s)]])
    assert res.exit_code == 0, res.output
    report = json.loads((student / "distillation.json").read_text())
    assert report["teacher"]["model"] == "mn04" and report["student"]["model"] == "mn04"
    fit = json.loads(next(student.rglob("fit.json")).read_text())
    assert fit["pretrained"]["checkpoint"] == "mn04_as"  # the student starts from AudioSet too
    assert 0.0 <= report["student"]["track_accuracy"] <= 1.0
