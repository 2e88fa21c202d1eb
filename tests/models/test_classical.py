"""Classical baselines: same command, same run folder, and models saved and loaded without pickle."""
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from earmark.cli import app
from earmark.errors import RunError
from earmark.models.classical import MODEL_FILE
from earmark.models.registry import create_model
from earmark.models.sklearn_state import load_estimator, save_estimator

runner = CliRunner()


@pytest.fixture(scope="module")
def svm_run(synth_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("classical") / "svm"
    res = runner.invoke(app, ["train", str(synth_data), "--out", str(out), "--set", "model.name=svm",
                              "--set", "split.val_size=0.15"])
    assert res.exit_code == 0, res.output
    assert "track accuracy" in res.stdout
    return out


def test_a_classical_run_has_the_same_folder_metrics_and_predictions(svm_run: Path):
    for name in ("run.json", "config.yaml", "labels.json", "members.json", "metrics.json", "report.md",
                 "confusion_matrix.png", "confusion_matrix.csv", "splits.csv", "test_predictions.csv"):
        assert (svm_run / name).is_file(), name
    member = svm_run / "folds" / "holdout" / "members" / "0"
    info = json.loads((member / "member.json").read_text())
    assert info["kind"] == "classical" and info["estimator"] == "SVC" and info["model"] == "svm"
    assert info["features"] == 2 * (20 + 20 + 64 + 64 + 11) and info["parameters"] > 0
    assert info["train_segments"] > 0 and 0.0 <= info["val_accuracy"] <= 1.0
    assert (member / MODEL_FILE).is_file() and not list(member.glob("*.pkl"))
    m = json.loads((svm_run / "metrics.json").read_text())
    assert m["track_accuracy"] >= 0.8 and m["folds"]["holdout"]["n_test_tracks"] == 12  # chance is 0.33
    rows = (svm_run / "test_predictions.csv").read_text().splitlines()
    assert rows[0].startswith("fold,path,label,predicted,p_hiss") and len(rows) == 13


def test_earmark_predict_works_on_a_classical_run(svm_run: Path, synth_data: Path):
    res = runner.invoke(app, ["predict", str(svm_run), str(synth_data / "tone" / "tone_00.wav"), "--segments"])
    assert res.exit_code == 0, res.output
    (r,) = json.loads(res.stdout)
    assert r["label"] == "tone" and sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert r["n_segments"] == len(r["segments"]) >= 1


def test_saved_estimators_load_identically_and_never_unpickle(tmp_path: Path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 6))
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5)
    xt = rng.standard_normal((30, 6))
    for name in ("logreg", "knn", "gnb"):
        pipe = create_model(name, 3).fit(x, y)
        path = tmp_path / f"{name}.safetensors"
        n = save_estimator(pipe, path, {"note": "x"})
        loaded, extra = load_estimator(path)
        assert n > 0 and extra == {"note": "x"}
        np.testing.assert_array_equal(loaded.predict_proba(xt), pipe.predict_proba(xt))
        assert path.read_bytes()[:1] != b"\x80"  # not a pickle stream


def test_untrusted_estimators_are_refused_both_ways(tmp_path: Path):
    from safetensors.numpy import load_file, save_file
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline

    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((20, 3)), np.arange(20) % 2
    with pytest.raises(TypeError, match="not one of the trusted"):
        save_estimator(Pipeline([("m", RandomForestClassifier(n_estimators=2))]).fit(x, y), tmp_path / "rf.st")
    path = tmp_path / "gnb.safetensors"
    save_estimator(create_model("gnb", 2).fit(x, y), path)
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata()
    meta["earmark_sklearn"] = meta["earmark_sklearn"].replace("sklearn.naive_bayes.GaussianNB", "os.system")
    save_file(load_file(str(path)), str(path), metadata=meta)
    with pytest.raises(RunError, match="not a trusted estimator"):
        load_estimator(path)
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(RunError, match="not a readable safetensors"):
        load_estimator(tmp_path / "junk.safetensors")
