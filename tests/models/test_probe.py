"""The linear probe on real audio: ESC-10 (3 classes x 10 clips), cached embeddings, self-contained members."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

import earmark
from earmark.errors import RunError
from earmark.models.probe import MLPHead, load_head, save_head

from ..conftest import shared_dataset

CLASSES = ("dog", "rain", "rooster")
OVERRIDES = ["split.method=holdout", "split.test_size=0.4", "segment.length_s=2.5", "segment.hop_s=2.5"]


@pytest.fixture(scope="module")
def esc_subset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A manifest of the first 10 ESC-10 clips of three classes (absolute paths)."""
    root = shared_dataset("esc10")
    with open(root / "manifest.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["label"] in CLASSES]
    keep = [r for c in CLASSES for r in [r for r in rows if r["label"] == c][:10]]
    out = tmp_path_factory.mktemp("esc3") / "manifest.csv"
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows([[str(root / r["path"]), r["label"]] for r in keep])
    return out


@pytest.fixture(scope="module")
def probe_run(esc_subset: Path, weights_env: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "probe"
    earmark.train(esc_subset, out, "pretrained-probe", OVERRIDES, show_progress=False)
    return out


def test_probe_beats_chance_by_a_margin(probe_run: Path):
    m = json.loads((probe_run / "metrics.json").read_text())
    assert m["folds"]["holdout"]["n_test_tracks"] == 12
    assert m["track_accuracy"] >= 0.75  # chance is 0.33; the frozen AudioSet network knows dogs, rain, roosters
    member = probe_run / "folds" / "holdout" / "members" / "0"
    info = json.loads((member / "member.json").read_text())
    assert info["kind"] == "probe" and info["head"] == "LogisticRegression"
    assert info["pretrained"]["sha256"].startswith("899a8c62") and info["embed_dim"] == 384
    assert info["train_segments"] == 36  # 18 training clips of 5 s, two 2.5 s windows each


def test_predict_and_evaluate_need_no_weights_folder(probe_run: Path, esc_subset: Path, tmp_path: Path):
    with open(esc_subset, newline="") as f:
        rows = list(csv.DictReader(f))
    saved = os.environ["EARMARK_WEIGHTS"]
    os.environ["EARMARK_WEIGHTS"] = str(tmp_path / "empty")  # the member carries its network
    try:
        results = earmark.Predictor(probe_run).predict([rows[0]["path"], rows[-1]["path"]])
        m = earmark.evaluate(probe_run, esc_subset, tmp_path / "eval", show_progress=False)
    finally:
        os.environ["EARMARK_WEIGHTS"] = saved
    assert [r["label"] for r in results] == ["dog", "rooster"]  # training clips: fitted well
    assert m["track_accuracy"] >= 0.85 and m["n_test_tracks"] == 30


def test_embeddings_are_cached_and_reused(probe_run: Path, esc_subset: Path, tmp_path: Path):
    out = tmp_path / "mlp"
    earmark.train(esc_subset, out, "pretrained-probe", OVERRIDES + ["model.name=probe_mlp"], show_progress=False)
    first = json.loads((probe_run / "folds/holdout/members/0/member.json").read_text())
    second = json.loads((out / "folds/holdout/members/0/member.json").read_text())
    assert second["head"] == "MLPHead"
    assert second["embed_seconds"] < first["embed_seconds"] / 3  # read from the store's cache, not recomputed
    caches = list(Path(os.environ["EARMARK_CACHE"]).rglob("embeddings/*.json"))
    assert len(caches) == 1 and json.loads(caches[0].read_text())["segments"] == 60
    assert json.loads((out / "metrics.json").read_text())["track_accuracy"] >= 0.75


def test_onnx_export_refuses_probes_clearly(probe_run: Path, tmp_path: Path):
    from earmark.inference.onnx import export_onnx

    with pytest.raises(RunError, match="probes"):
        export_onnx(probe_run, tmp_path / "m.onnx")


def test_a_probe_at_another_sample_rate_resamples_for_the_network(esc_subset: Path, tmp_path: Path,
                                                                   weights_env: Path):
    out = tmp_path / "r16k"
    earmark.train(esc_subset, out, "default", OVERRIDES + ["model.name=probe", "model.pretrained=mn04_as"],
                  show_progress=False)  # the default recipe decodes at 16 kHz
    m = json.loads((out / "metrics.json").read_text())
    assert m["track_accuracy"] >= 0.75
    with open(esc_subset, newline="") as f:
        first = next(iter(csv.DictReader(f)))["path"]
    assert earmark.Predictor(out).predict([first])[0]["label"] == "dog"


def test_mlp_head_round_trip(tmp_path: Path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 8)).astype(np.float32) + np.repeat(np.eye(3, 8, dtype=np.float32) * 3, 20, 0)
    y = np.repeat(np.arange(3), 20)
    head = MLPHead(3, hidden=16, epochs=100).fit(x, y)
    assert (head.predict_proba(x).argmax(1) == y).mean() > 0.9
    save_head(head, tmp_path / "head.safetensors", {"num_classes": 3})
    loaded, extra = load_head(tmp_path / "head.safetensors")
    assert extra == {"num_classes": 3}
    np.testing.assert_array_equal(loaded.predict_proba(x), head.predict_proba(x))


def test_serve_a_probe_run(probe_run: Path, esc_subset: Path):
    from fastapi.testclient import TestClient

    from earmark.serve.app import create_app

    with open(esc_subset, newline="") as f:
        first = next(iter(csv.DictReader(f)))["path"]
    r = TestClient(create_app(probe_run)).post("/v1/predict?filename=dog.flac", content=Path(first).read_bytes())
    assert r.status_code == 200, r.text
    assert r.json()["label"] == "dog" and set(r.json()["probabilities"]) == set(CLASSES)
