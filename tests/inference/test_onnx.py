"""ONNX export: one graph from waveform to probabilities, equal to PyTorch on real files."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from earmark.audio.io import load_audio
from earmark.audio.segment import cut, segment_starts
from earmark.cli import app
from earmark.errors import RunError
from earmark.inference.onnx import OnnxModel, SegmentCutter, WaveformClassifier, export_onnx
from earmark.inference.predictor import Predictor

from ..conftest import shared_dataset

runner = CliRunner()
TOL = 1e-4


def clips(name: str, n: int, step: int) -> list[Path]:
    """``n`` real files of a shared dataset, every ``step``-th row of its manifest."""
    root = shared_dataset(name)
    with open(root / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [root / r["path"] for r in rows[::step][:n]]


def as_arrays(result: dict, labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    track = np.array([result["probabilities"][lbl] for lbl in labels])
    segs = np.array([[s["probabilities"][lbl] for lbl in labels] for s in result["segments"]])
    return track, segs


@pytest.fixture(scope="module")
def fsdd_onnx(fsdd_run: Path) -> Path:
    """The FSDD run exported with the command line into RUN/model.onnx (where Predictor looks for it)."""
    out = fsdd_run / "model.onnx"
    res = runner.invoke(app, ["export", str(fsdd_run), "--format", "onnx", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert str(out) in res.stdout and "max difference" in res.stdout
    return out


@pytest.fixture(scope="module")
def esc10_onnx(esc10_cv_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(esc10_cv_run, tmp_path_factory.mktemp("onnx") / "esc10.onnx")


def test_single_member_run_matches_pytorch_on_real_files(fsdd_run: Path, fsdd_onnx: Path):
    model, torch_predictor = OnnxModel(fsdd_onnx), Predictor(fsdd_run)
    files = clips("fsdd", 4, 211)
    lengths = set()
    for f in files:
        ref_track, ref_segs = as_arrays(torch_predictor.predict_file(f, segments=True), model.labels)
        wave = load_audio(f, model.sample_rate)
        lengths.add(wave.shape[0])
        probs, seg_probs = model.run(wave[None, :])
        assert probs.shape == (1, 10) and seg_probs.shape == (1, ref_segs.shape[0], 10)
        assert np.abs(probs[0] - ref_track).max() < TOL
        assert np.abs(seg_probs[0] - ref_segs).max() < TOL
        assert probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert len(lengths) == len(files)  # spoken digits differ in length: one graph served them all


def test_cross_validation_ensemble_exports_as_one_graph(esc10_cv_run: Path, esc10_onnx: Path):
    import onnx

    members = json.loads((esc10_cv_run / "members.json").read_text())["members"]
    assert len(members) == 2  # one per fold, voting (hard, weighted), then a majority over segments
    graph = onnx.load(str(esc10_onnx)).graph
    ops = {n.op_type for n in graph.node}
    assert not ops & {"STFT", "DFT"} and "Conv" in ops  # the filter bank is inside, as matrix products
    assert [i.name for i in graph.input] == ["waveform"]
    assert [o.name for o in graph.output] == ["probabilities", "segment_probabilities"]
    model, torch_predictor = OnnxModel(esc10_onnx), Predictor(esc10_cv_run)
    for f in clips("esc10", 2, 37):
        ref_track, ref_segs = as_arrays(torch_predictor.predict_file(f, segments=True), model.labels)
        probs, seg_probs = model.run(load_audio(f, model.sample_rate))
        assert seg_probs.shape == (1, 9, 10)  # 5 s, 1 s segments every 0.5 s
        assert np.abs(probs[0] - ref_track).max() < TOL and np.abs(seg_probs[0] - ref_segs).max() < TOL


def test_variable_lengths_and_batches(esc10_cv_run: Path, esc10_onnx: Path):
    model, torch_predictor = OnnxModel(esc10_onnx), Predictor(esc10_cv_run)
    (f,) = clips("esc10", 1, 53)
    wave = load_audio(f, model.sample_rate)
    seg = model.segment_samples
    for n in (seg // 3, seg, seg + 1, seg + seg // 2, 2 * seg + 777, wave.shape[0]):
        batch = np.stack([wave[:n], wave[-n:]])
        probs, seg_probs = model.run(batch)
        for row in range(2):
            ref_track, ref_segs = as_arrays(torch_predictor.predict_waveform(batch[row], segments=True), model.labels)
            assert seg_probs.shape[1] == ref_segs.shape[0], n
            assert np.abs(probs[row] - ref_track).max() < TOL, n
            assert np.abs(seg_probs[row] - ref_segs).max() < TOL, n


def test_metadata_is_enough_to_use_the_file(esc10_cv_run: Path, esc10_onnx: Path):
    import onnxruntime as ort

    meta = ort.InferenceSession(str(esc10_onnx)).get_modelmeta().custom_metadata_map
    labels = json.loads((esc10_cv_run / "labels.json").read_text())
    assert json.loads(meta["earmark.labels"]) == labels
    assert meta["earmark.sample_rate"] == "16000"
    segment = json.loads(meta["earmark.segment"])
    assert (segment["samples"], segment["hop_samples"], segment["tail"]) == (16000, 8000, "align")
    assert meta["earmark.aggregate"] == "vote" and meta["earmark.voting"] == "hard"
    members = json.loads((esc10_cv_run / "members.json").read_text())["members"]
    assert [m["weight"] for m in json.loads(meta["earmark.members"])] == [m["weight"] for m in members]
    assert json.loads(meta["earmark.tta"])["n"] == 1


@pytest.mark.parametrize("voting", ["soft", "hard"])
def test_graph_votes_and_aggregates_like_the_predictor(voting: str):
    """The graph's member vote, test-time shifts and segment aggregation are those of earmark.ensemble and
    earmark.evaluation.aggregate (the exports themselves are checked against PyTorch above)."""
    from earmark.ensemble import vote, with_tta
    from earmark.evaluation.aggregate import aggregate_track

    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Linear(32, 16), torch.nn.Tanh(), torch.nn.Linear(16, 5)) for _ in range(3)]
    weights = [1.0, 0.5, 2.0]
    segs = np.random.default_rng(1).standard_normal((40, 32)).astype(np.float32)
    for aggregate in ("mean", "sum", "vote"):
        model = WaveformClassifier(nets, weights, voting, aggregate, SegmentCutter(32, 16), tta=3, tta_shift=0.2)
        with torch.no_grad():
            got = model.combine(torch.from_numpy(segs)).numpy()
            per_member = [with_tta(lambda w, n=n: torch.softmax(n(torch.from_numpy(w)), 1).numpy(), segs, 3, 0.2)
                          for n in nets]
            want = vote(per_member, voting, weights)
            np.testing.assert_allclose(got, want, atol=1e-6)
            track = model.track(torch.from_numpy(want.astype(np.float32))[None])[0].numpy()
            np.testing.assert_allclose(track, aggregate_track(want, aggregate), atol=1e-6)


@pytest.mark.parametrize("tail,short", [("align", "pad"), ("pad", "repeat"), ("drop", "pad")])
def test_segment_cutter_cuts_like_segment_starts(tail: str, short: str):
    length, hop, min_tail = 40, 15, 6
    cutter = SegmentCutter(length, hop, tail, short, min_tail)
    rng = np.random.default_rng(0)
    for n in [*range(1, 130), 400, 401]:
        x = rng.standard_normal(n).astype(np.float32)
        segs, starts = cut(x, length, hop, short, tail, min_tail)
        got = cutter(torch.from_numpy(x)[None])[0].numpy()
        assert got.shape == segs.shape, (n, got.shape, segs.shape)
        np.testing.assert_array_equal(got, segs)
        assert len(starts) == len(segment_starts(n, length, hop, short, tail, min_tail))


def test_exported_cutter_handles_every_length(tmp_path: Path):
    """The tail and short-input policies survive export: shape arithmetic only, no specialised lengths."""
    import onnxruntime as ort

    length, hop = 40, 15
    cutter = SegmentCutter(length, hop, "pad", "repeat", min_tail=6).eval()
    path = tmp_path / "cutter.onnx"
    dims = ({0: torch.export.Dim("batch", min=1, max=64), 1: torch.export.Dim("samples", min=1, max=1 << 20)},)
    with torch.no_grad():
        torch.onnx.export(cutter, (torch.zeros(2, 97),), dynamic_shapes=dims, dynamo=True, input_names=["w"],
                          verbose=False).save(str(path))
    session = ort.InferenceSession(str(path))
    for n in (1, 7, 39, 40, 41, 46, 55, 60, 61, 97, 250):
        x = np.random.default_rng(n).standard_normal((3, n)).astype(np.float32)
        (got,) = session.run(None, {"w": x})
        want = np.stack([cut(row, length, hop, "repeat", "pad", 6)[0] for row in x])
        np.testing.assert_array_equal(got, want)


def test_predict_backend_onnx_equals_torch(fsdd_run: Path, fsdd_onnx: Path):
    files = [str(f) for f in clips("fsdd", 2, 503)]
    outs = {}
    for backend in ("torch", "onnx"):
        res = runner.invoke(app, ["predict", str(fsdd_run), *files, "--segments", "--backend", backend])
        assert res.exit_code == 0, res.output
        outs[backend] = json.loads(res.stdout)
    assert fsdd_onnx.is_file()  # the exported file was used, not exported again
    labels = json.loads((fsdd_run / "labels.json").read_text())
    for t, o in zip(outs["torch"], outs["onnx"]):
        assert t["label"] == o["label"] and t["n_segments"] == o["n_segments"]
        (tt, ts), (ot, os_) = as_arrays(t, labels), as_arrays(o, labels)
        assert np.abs(tt - ot).max() < TOL and np.abs(ts - os_).max() < TOL


def test_onnx_file_from_another_run_state_is_refused(fsdd_run: Path, fsdd_onnx: Path, tmp_path: Path):
    run = Path(shutil.copytree(fsdd_run, tmp_path / "run", ignore=shutil.ignore_patterns("model.onnx")))
    Predictor(run, backend="onnx", onnx_path=fsdd_onnx)  # same run contents: accepted
    info = json.loads((run / "members.json").read_text())
    info["members"][0]["weight"] = 3.0
    (run / "members.json").write_text(json.dumps(info))
    with pytest.raises(RunError, match="export it again"):
        Predictor(run, backend="onnx", onnx_path=fsdd_onnx)


def test_classical_members_are_refused_with_a_clear_error(fsdd_run: Path, tmp_path: Path):
    run = Path(shutil.copytree(fsdd_run, tmp_path / "run", ignore=shutil.ignore_patterns("model.onnx")))
    info = json.loads((run / "members.json").read_text())
    info["members"][0]["kind"] = "classical"
    (run / "members.json").write_text(json.dumps(info))
    with pytest.raises(RunError, match="classical scikit-learn"):
        export_onnx(run, tmp_path / "x.onnx")
    res = runner.invoke(app, ["export", str(run), "--out", str(tmp_path / "x.onnx")])
    assert res.exit_code == 2 and "classical" in res.output
    assert not (tmp_path / "x.onnx").exists()


def test_waveform_classifier_rejects_bad_settings():
    cutter = SegmentCutter(10, 5)
    net = torch.nn.Sequential(torch.nn.Linear(10, 3))
    with pytest.raises(RunError, match="voting"):
        WaveformClassifier([net], [1.0], "plurality", "mean", cutter)
    with pytest.raises(RunError, match="weight"):
        WaveformClassifier([net], [1.0, 2.0], "soft", "mean", cutter)
    with pytest.raises(ValueError, match="tail"):
        SegmentCutter(10, 5, tail="wrap")
