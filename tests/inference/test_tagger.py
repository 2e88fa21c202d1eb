"""The pretrained AudioSet tagger: Python API, CLI json/csv, long files, bad files, the label list."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import earmark
from earmark.audio.io import load_audio
from earmark.cli import app
from earmark.inference.tagger import Tagger, windows
from earmark.models.audioset import audioset_labels

from ..conftest import shared_weights, write_wav

RAIL = {"Train", "Rail transport", "Railroad car, train wagon", "Subway, metro, underground"}
runner = CliRunner()


@pytest.fixture(scope="module")
def tagger(weights_env: Path) -> Tagger:
    return Tagger("mn04_as")


@pytest.fixture(scope="module")
def metro() -> Path:
    return shared_weights("metro_station-paris.wav")


def test_windows_cut_long_signals_and_keep_short_ones_whole():
    short = [np.ones(300, np.float32), np.ones(200, np.float32)]
    assert [(s, len(w)) for s, w in windows(short, 1000, 500)] == [(0, 500)]  # no padding
    long = [np.arange(1200, dtype=np.float32)[i: i + 250] for i in range(0, 1200, 250)]
    got = [(s, len(w), float(w[0])) for s, w in windows(long, 1000, 500)]
    assert got == [(0, 1000, 0.0), (200, 1000, 200.0)]  # the last window ends at the end
    assert list(windows([], 1000, 500)) == []


def test_tag_ranks_a_rail_label_in_the_top_5(metro: Path, weights_env: Path):
    results = earmark.tag([metro], top=5)
    assert len(results) == 1 and results[0]["path"] == str(metro)
    tags = results[0]["tags"]
    assert len(tags) == 5 and {t["label"] for t in tags} & RAIL
    scores = [t["score"] for t in tags]
    assert scores == sorted(scores, reverse=True) and all(0.0 < s < 1.0 for s in scores)
    assert tags[0]["label"] == "Train" and abs(tags[0]["score"] - 0.73) < 0.02  # the README's reference value
    assert sum(scores) > 1.0  # sigmoid (multi-label) scores, not a softmax over classes


def test_long_file_windows_and_max_aggregation(tagger: Tagger, metro: Path):
    wave = load_audio(metro, 32000)
    long = np.concatenate([wave, np.zeros(32000 * 2, np.float32), wave])  # 22 s: windows at 0, 5, 10, 12 s
    r = tagger.tag_waveform(long, 32000, top=527, segments=True, name="long")
    assert r["n_windows"] == 4 and [s["start"] for s in r["segments"]] == [0.0, 5.0, 10.0, 12.0]
    assert r["segments"][-1]["end"] == pytest.approx(22.0)
    per_window = {s["start"]: {t["label"]: t["score"] for t in s["tags"]} for s in r["segments"]}
    track = {t["label"]: t["score"] for t in r["tags"]}
    for label in ("Train", "Speech", "Music"):
        assert track[label] == pytest.approx(max(w[label] for w in per_window.values()), abs=1e-6)
    assert per_window[0.0]["Train"] == pytest.approx(0.727, abs=0.02)  # the first window is the clip itself


def test_bad_files_give_an_error_entry(tagger: Tagger, metro: Path, tmp_path: Path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    silent = write_wav(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
    results = tagger.tag([bad, metro, silent], top=3)
    assert "error" in results[0] and results[0]["path"] == str(bad)
    assert "tags" in results[1] and len(results[1]["tags"]) == 3
    assert "silent" in results[2]["error"]


def test_cli_json_and_csv(metro: Path, weights_env: Path, tmp_path: Path):
    res = runner.invoke(app, ["tag", str(metro), "--top", "3"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert list(out[0]) == ["path", "tags", "duration_s", "n_windows"]
    assert len(out[0]["tags"]) == 3 and set(out[0]["tags"][0]) == {"label", "score"}
    assert {t["label"] for t in out[0]["tags"]} & RAIL
    res = runner.invoke(app, ["tag", str(metro), "--top", "2", "--format", "csv", "--segments"])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [r["level"] for r in rows] == ["file", "file", "segment", "segment"]
    assert rows[0]["label"] == "Train" and rows[0]["rank"] == "1" and float(rows[0]["score"]) > 0.5
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"\x00" * 100)
    res = runner.invoke(app, ["tag", str(bad)])
    assert res.exit_code == 1 and "error" in json.loads(res.stdout)[0]


def test_labels_ship_with_the_package(tmp_path: Path):
    packaged = audioset_labels(None)
    assert len(packaged) == 527 and packaged[0] == "Speech" and "Subway, metro, underground" in packaged
    assert audioset_labels(tmp_path / "mn04_as_mAP_432.pt") == packaged  # no csv beside the weights: the copy


def test_a_weights_file_by_path_and_a_clear_error_when_missing(metro: Path, weights_env: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch):
    by_path = Tagger(str(weights_env / "mn04_as_mAP_432.pt"))
    assert by_path.model.checkpoint == "mn04_as_mAP_432" and by_path.model.width == 0.4
    assert by_path.tag_file(metro, top=1)["tags"][0]["label"] == "Train"
    monkeypatch.setenv("EARMARK_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("EARMARK_OFFLINE", "1")
    res = runner.invoke(app, ["tag", str(metro)])
    assert res.exit_code == 2 and "mn04_as_mAP_432.pt" in res.output and str(tmp_path) in res.output
