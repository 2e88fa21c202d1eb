"""`earmark compare`: a leaderboard of finished runs, classical and deep side by side."""
import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import earmark
from earmark.cli import app
from earmark.errors import RunError
from earmark.evaluation.compare import compare_runs, expand_runs


@pytest.fixture(scope="module")
def gnb_run(synth_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compare") / "gnb"
    earmark.train(synth_data, out, "default", ["model.name=gnb"], show_progress=False)
    return out


def test_leaderboard_rows_files_and_chart(trained_run: Path, gnb_run: Path, tmp_path: Path):
    rows = compare_runs([trained_run, gnb_run], out_dir=tmp_path, speed_batches=2)
    by_model = {r["model"]: r for r in rows}
    assert set(by_model) == {"cnn", "gnb"}
    assert rows[0]["track_accuracy"] >= rows[1]["track_accuracy"]  # best first
    for run, r in ((trained_run, by_model["cnn"]), (gnb_run, by_model["gnb"])):
        m = json.loads((run / "metrics.json").read_text())
        assert r["track_accuracy"] == m["track_accuracy"] and r["track_macro_f1"] == m["track_macro_f1"]
        assert r["segment_accuracy"] == m["segment_accuracy"] and r["train_seconds"] == m["train_seconds"]
        assert r["segments_per_s"] > 0 and r["parameters"] > 0 and r["members"] == 1
    assert by_model["cnn"]["family"] == "cnn" and by_model["gnb"]["family"] == "classical"
    cnn_params = json.loads((trained_run / "folds/holdout/members/0/member.json").read_text())["parameters"]
    assert by_model["cnn"]["parameters"] == cnn_params
    md = (tmp_path / "comparison.md").read_text().splitlines()
    assert md[0].startswith("| run | model | family | parameters") and len(md) == 4
    with open(tmp_path / "comparison.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["model"] for r in table] == [r["model"] for r in rows]
    assert (tmp_path / "comparison.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_compare_prints_the_table(trained_run: Path, gnb_run: Path, tmp_path: Path):
    res = CliRunner().invoke(app, ["compare", str(trained_run), str(gnb_run), "--out", str(tmp_path / "c"),
                                   "--speed-batches", "0"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].split()[:3] == ["run", "model", "family"] and len(lines) == 5
    assert any(" gnb " in line for line in lines) and (tmp_path / "c" / "comparison.md").is_file()
    bad = CliRunner().invoke(app, ["compare", str(tmp_path)])
    assert bad.exit_code == 2 and "not an earmark run" in bad.output


def test_a_run_of_variants_stands_for_its_variants(tmp_path: Path):
    parent = tmp_path / "sweep"
    parent.mkdir()
    (parent / "run.json").write_text(json.dumps({"status": "complete", "variants": ["a", "b"]}))
    assert expand_runs([parent]) == [("sweep/a", parent / "variants" / "a"), ("sweep/b", parent / "variants" / "b")]
    with pytest.raises(RunError, match="nothing to compare"):
        compare_runs([])
