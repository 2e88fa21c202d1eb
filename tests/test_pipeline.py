"""End to end on synthesized audio: train, the run folder, predict, evaluate, bad files, resume."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import earmark
from earmark.cli import app
from earmark.errors import RunError

from .conftest import FAST, make_class_folders, tone, write_wav

runner = CliRunner()


def test_run_folder_holds_everything(trained_run: Path):
    for name in ("run.json", "config.yaml", "labels.json", "members.json", "metrics.json", "report.md",
                 "spectrograms.png",
                 "confusion_matrix.png", "confusion_matrix.csv", "training_curves.png", "skipped.csv",
                 "splits.csv", "test_predictions.csv"):
        assert (trained_run / name).is_file(), name
    member = trained_run / "folds" / "holdout" / "members" / "0"
    assert (member / "model.safetensors").is_file() and (member / "checkpoints" / "last.ckpt").is_file()
    assert (member / "logs" / "csv" / "metrics.csv").is_file()
    info = json.loads((trained_run / "run.json").read_text())
    assert info["status"] == "complete" and info["versions"]["torch"]
    assert json.loads((trained_run / "labels.json").read_text()) == ["hiss", "knock", "tone"]


def test_metrics_are_honest_and_above_chance(trained_run: Path):
    m = json.loads((trained_run / "metrics.json").read_text())
    for key in ("segment_accuracy", "track_accuracy", "track_macro_f1"):
        assert 0.0 <= m[key] <= 1.0
    assert m["track_accuracy"] >= 0.8  # three clearly different sound classes; chance is 0.33
    # 30 % of each class of 12 files (3.6, rounded to 4), whole files only
    assert m["folds"]["holdout"]["n_test_tracks"] == 12
    splits = (trained_run / "splits.csv").read_text().splitlines()[1:]
    assert sum(r.endswith(",test") for r in splits) == 12
    assert set(m["per_class"]) == {"hiss", "knock", "tone"}


def test_predict_files_folders_and_long_audio(trained_run: Path, synth_data: Path, tmp_path: Path):
    from earmark.demo import synth

    rng = np.random.default_rng(5)
    long = np.concatenate([synth("tone", 6.0, 16000, rng), synth("knock", 6.0, 16000, rng)])
    path = write_wav(tmp_path / "long.wav", long, 16000)
    p = earmark.Predictor(trained_run)
    (res,) = p.predict([path], segments=True)
    assert res["duration_s"] == pytest.approx(12.0, abs=0.01)
    assert sum(res["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    starts = [s["start"] for s in res["segments"]]
    assert starts[0] == 0 and starts == sorted(starts) and res["segments"][-1]["end"] == pytest.approx(12.0)
    first, last = res["segments"][0]["label"], res["segments"][-1]["label"]
    assert (first, last) == ("tone", "knock")  # the timeline follows the content
    folder_results = p.predict([synth_data / "hiss"])
    assert len(folder_results) == 12 and sum(r["label"] == "hiss" for r in folder_results) >= 10


def test_predict_reports_bad_files_without_crashing(trained_run: Path, tmp_path: Path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all" * 20)
    silent = write_wav(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
    good = write_wav(tmp_path / "good.wav", tone(440, 1.5), 16000)
    results = earmark.Predictor(trained_run).predict([bad, silent, good])
    assert "not readable" in results[0]["error"] and "silent" in results[1]["error"]
    assert "label" in results[2]


def test_cli_predict_json_csv_and_segments(trained_run: Path, synth_data: Path):
    f = synth_data / "tone" / "tone_00.wav"
    out = runner.invoke(app, ["predict", str(trained_run), str(f)])
    assert out.exit_code == 0, out.output
    (res,) = json.loads(out.stdout)
    assert set(res) >= {"path", "label", "probabilities"} and res["label"] == "tone"
    out = runner.invoke(app, ["predict", str(trained_run), str(f), "--format", "csv", "--segments"])
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("path,start_s,end_s,label,p_hiss,p_knock,p_tone")
    assert len(lines) - 1 == json.loads(runner.invoke(app, ["predict", str(trained_run), str(f)]).stdout)[0][
        "n_segments"]


def test_cli_evaluate_scores_a_run_on_data(trained_run: Path, synth_data: Path, tmp_path: Path):
    out = runner.invoke(app, ["evaluate", str(trained_run), str(synth_data), "--out", str(tmp_path / "ev")])
    assert out.exit_code == 0, out.output
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["n_test_tracks"] == 36 and m["track_accuracy"] >= 0.8
    assert (tmp_path / "ev" / "confusion_matrix.png").is_file()


def test_predict_refuses_an_unfinished_run(tmp_path: Path):
    with pytest.raises(RunError, match="not an earmark run"):
        earmark.Predictor(tmp_path)
    (tmp_path / "run.json").write_text('{"status": "running"}')
    with pytest.raises(RunError, match="resume"):
        earmark.Predictor(tmp_path)


def test_bad_files_are_skipped_and_listed(tmp_path: Path):
    data = make_class_folders(tmp_path / "data", per_class=6, classes=("tone", "hiss"))
    (data / "tone" / "corrupt.wav").write_bytes(b"RIFF" + os.urandom(500))
    (data / "hiss" / "empty.flac").write_bytes(b"")
    write_wav(data / "hiss" / "tiny.wav", np.full(1, 0.5, np.float32), 16000)
    run = earmark.train(data, tmp_path / "run", "default", FAST + ["train.epochs=1"], show_progress=False)
    skipped = (run.path / "skipped.csv").read_text()
    for name in ("corrupt.wav", "empty.flac", "tiny.wav"):
        assert name in skipped
    assert json.loads((run.path / "metrics.json").read_text())["n_skipped"] == 3


def test_cross_validation_reports_each_fold_and_mean_std(tmp_path: Path, synth_data: Path):
    run = earmark.train(synth_data, tmp_path / "cv", "default",
                        FAST + ["train.epochs=1", "split.method=kfold", "split.folds=3"], show_progress=False)
    m = json.loads((run.path / "metrics.json").read_text())
    assert list(m["folds"]) == ["fold1", "fold2", "fold3"] and m["n_folds"] == 3
    accs = [f["track_accuracy"] for f in m["folds"].values()]
    assert m["track_accuracy"] == pytest.approx(np.mean(accs))
    assert m["track_accuracy_std"] == pytest.approx(np.std(accs, ddof=1))
    members = json.loads((run.path / "members.json").read_text())["members"]
    assert len(members) == 3  # predicting with a CV run averages its fold models
    assert sum(f["n_test_tracks"] for f in m["folds"].values()) == 36


def test_interrupted_training_resumes_from_its_last_checkpoint(tmp_path: Path, synth_data: Path, caplog, recwarn):
    out = tmp_path / "run"
    epochs = 30  # enough that the kill below lands mid-training even on a fast machine
    sets = FAST + [f"train.epochs={epochs}", "train.lr=0.001"]
    cmd = [sys.executable, "-m", "earmark.cli", "train", str(synth_data), "--out", str(out)]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "EARMARK_PROGRESS": "0"})
    last = out / "folds" / "holdout" / "members" / "0" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while time.time() < deadline and not last.is_file():
        time.sleep(0.05)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert last.is_file(), "training never wrote a checkpoint"
    assert json.loads((out / "run.json").read_text())["status"] == "running"
    with pytest.raises(RunError):
        earmark.Predictor(out)  # a half-written run is never taken for a finished one
    import torch

    killed_at = torch.load(last, weights_only=True)["epoch"]
    assert killed_at < epochs, "training finished before it could be interrupted"
    caplog.set_level("INFO")
    earmark.train(synth_data, out, "default", sets, show_progress=False)
    assert f"resuming 0 from its last checkpoint (epoch {killed_at})" in caplog.text
    # Lightning's "Previous log files ... will be deleted" is not shown: the earlier attempt's log is kept
    assert not [w for w in recwarn if "Previous log files" in str(w.message)]
    assert "previous attempt's metrics are kept in" in caplog.text
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "complete" and info["attempts"] == 2
    member = out / "folds" / "holdout" / "members" / "0"
    fit = json.loads((member / "fit.json").read_text())
    assert fit["epochs_run"] == epochs
    from earmark.evaluation.plots import read_training_logs

    curves = read_training_logs(member / "logs" / "csv")
    assert [e for e, _ in curves["train_loss"]] == list(range(epochs))  # both attempts' epochs are kept


def test_resuming_with_other_settings_is_refused(trained_run: Path, synth_data: Path):
    with pytest.raises(RunError, match="different settings"):
        earmark.train(synth_data, trained_run, "default", FAST + ["train.epochs=5"], show_progress=False)
