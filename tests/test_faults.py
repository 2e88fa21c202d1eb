"""Fault injection over the whole path: prepare, train, evaluate, predict and serve a dataset full of faults.

One dataset holds every fault at once (next to 12 good files), under a folder whose name has spaces and
non-ASCII characters; one small training run on it is shared by the tests. Each fault has a defined
outcome: the file is skipped and reported with its reason (``skipped.csv``, ``prepare``'s output, the
``error`` of a prediction, a 4xx answer of the server) and everything else proceeds, or, for faults that
leave usable audio (8 channels, 8 kHz, 192 kHz, odd names, a class of one file), it is simply used.
"""
import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from earmark.cli import app
from earmark.demo import synth

from .conftest import FAST, write_wav

SR = 16000
runner = CliRunner()

#: file -> what its reason must say (and the defined outcome: skipped)
BAD = {
    "tone/truncated.mp3": "truncated: the header states 3.",
    "hiss/truncated.flac": "truncated: the header states 3.000 s",
    "tone/truncated.wav": "truncated: the header states 3.000 s",
    "tone/random bytes.wav": "not readable as audio",
    "hiss/empty.wav": "empty file (0 bytes)",
    "tone/zeros.wav": "silent: every sample is zero",
    "hiss/nan.wav": "contains NaN or Inf samples",
    "tone/inf.wav": "contains NaN or Inf samples",
    "tone/one sample.wav": "too short: 0.1 ms, at least 50 ms needed (audio.min_duration_s)",
}
MISSING = "tone/gone.wav"  # a manifest row whose file does not exist
#: file -> samples after decoding to 16 kHz mono (the defined outcome: used)
ODD_BUT_USABLE = {
    "hiss/eight channels.wav": 19200,
    "tone/rate 8k.wav": 19200,
    "hiss/rate 192k.wav": 19200,
    "tone/naïve café ♪.wav": 19200,
    "solo/only one.wav": 19200,  # the only file of its class
}


def make_faulty_dataset(root: Path) -> Path:
    """12 good files of two classes, every fault above, and a manifest listing them all and a missing file."""
    rng = np.random.default_rng(0)
    data = root / "données d'essai" / "set 1"
    rows: list[tuple[str, str]] = []

    def put(rel: str, wave: np.ndarray, rate: int, subtype: str | None = None) -> Path:
        path = data / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), wave, rate, subtype=subtype)
        rows.append((rel, rel.split("/")[0]))
        return path

    for label in ("tone", "hiss"):
        for k in range(6):
            put(f"{label}/{label}_{k}.wav", synth(label, rng.uniform(1.0, 1.6), SR, rng), SR)
    for rel in ("tone/truncated.mp3", "hiss/truncated.flac", "tone/truncated.wav"):
        path = put(rel, synth(rel.split("/")[0], 3.0, SR, rng), SR)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    (data / "tone" / "random bytes.wav").write_bytes(rng.bytes(3000))
    (data / "hiss" / "empty.wav").write_bytes(b"")
    rows += [("tone/random bytes.wav", "tone"), ("hiss/empty.wav", "hiss")]
    put("tone/zeros.wav", np.zeros(SR, np.float32), SR)
    for rel, bad in (("hiss/nan.wav", np.nan), ("tone/inf.wav", np.inf)):
        wave = synth(rel.split("/")[0][:4], 1.0, SR, rng)
        wave[100] = bad
        put(rel, wave, SR, "FLOAT")
    put("tone/one sample.wav", np.full(1, 0.3, np.float32), SR)
    put("hiss/eight channels.wav", np.tile(synth("hiss", 1.2, SR, rng)[:, None], (1, 8)), SR)
    put("tone/rate 8k.wav", synth("tone", 1.2, 8000, rng), 8000)
    put("hiss/rate 192k.wav", synth("hiss", 1.2, 192000, rng), 192000)
    put("tone/naïve café ♪.wav", synth("tone", 1.2, SR, rng), SR)
    put("solo/only one.wav", synth("knock", 1.2, SR, rng), SR)
    rows.append((MISSING, "tone"))
    (data / "manifest.csv").write_text("path,label\n" + "".join(f'"{p}",{lbl}\n' for p, lbl in rows),
                                       encoding="utf-8")
    return data


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_faulty_dataset(tmp_path_factory.mktemp("faults"))


@pytest.fixture(scope="module")
def faulty_run(faulty: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One small training run over the faulty data (and the warnings it logged)."""
    import earmark

    handler = _Collect()
    logging.getLogger("earmark").addHandler(handler)
    try:
        out = tmp_path_factory.mktemp("runs") / "run é 1"
        earmark.train(faulty, out, "default", FAST + ["train.epochs=1"], show_progress=False)
    finally:
        logging.getLogger("earmark").removeHandler(handler)
    return out, "\n".join(handler.messages)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _rel(data: Path, path: str) -> str:
    return Path(path).relative_to(data).as_posix()


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _check_reasons(data: Path, skipped: dict[str, str]) -> None:
    assert set(skipped) == {*BAD, MISSING}
    for rel, reason in BAD.items():
        assert reason in skipped[rel], (rel, skipped[rel])
    assert "does not exist" in skipped[MISSING]


def test_prepare_skips_each_fault_with_its_reason_and_decodes_the_rest(faulty: Path):
    from earmark.config import load_recipe
    from earmark.data.dataset import load_dataset

    ds = load_dataset(faulty, load_recipe("default"), show_progress=False)
    _check_reasons(faulty, {_rel(faulty, p): r for p, r in ds.skipped()})
    lengths = {ds.manifest.relpath(it): f.length for it, f in zip(ds.manifest.items, ds.store.files) if f.ok}
    assert len(lengths) == 12 + len(ODD_BUT_USABLE)
    for rel, n in ODD_BUT_USABLE.items():
        assert lengths[rel] == n, rel
    out = runner.invoke(app, ["prepare", str(faulty)])
    assert out.exit_code == 0, out.output
    assert f"{12 + len(ODD_BUT_USABLE)} prepared" in out.output and f"{len(BAD) + 1} skipped" in out.output
    assert out.output.count("skipped ") == len(BAD) + 1 and "naïve" not in out.output


def test_training_proceeds_and_lists_every_skipped_file(faulty_run: tuple[Path, str], faulty: Path):
    run, logged = faulty_run
    assert json.loads((run / "run.json").read_text())["status"] == "complete"
    _check_reasons(faulty, {_rel(faulty, r["path"]): r["reason"] for r in _csv(run / "skipped.csv")})
    m = json.loads((run / "metrics.json").read_text())
    assert m["n_skipped"] == len(BAD) + 1 and m["n_files"] == 12 + len(ODD_BUT_USABLE) + len(BAD) + 1
    assert json.loads((run / "labels.json").read_text()) == ["hiss", "solo", "tone"]
    sides = {_rel(faulty, r["path"]): r["holdout"] for r in _csv(run / "splits.csv")}
    assert sides["solo/only one.wav"] == "train"  # a class of one file cannot be tested
    assert all(sides[rel] in ("train", "val", "test") for rel in ODD_BUT_USABLE)
    assert f"{len(BAD) + 1} file(s) skipped" in logged
    assert "audit: class 'solo' has fewer than 2 usable files" in logged


def test_evaluate_on_faulty_data_scores_the_usable_files(faulty_run: tuple[Path, str], faulty: Path,
                                                          tmp_path: Path):
    run, _ = faulty_run
    out = runner.invoke(app, ["evaluate", str(run), str(faulty), "--out", str(tmp_path / "ev")])
    assert out.exit_code == 0, out.output
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["n_test_tracks"] == 12 + len(ODD_BUT_USABLE) and m["n_skipped"] == len(BAD) + 1
    skipped = _csv(tmp_path / "ev" / "skipped.csv")
    _check_reasons(faulty, {_rel(faulty, r["path"]): r["reason"] for r in skipped})


def test_predict_answers_every_file_with_a_label_or_its_reason(faulty_run: tuple[Path, str], faulty: Path):
    import earmark

    run, _ = faulty_run
    results = earmark.Predictor(run).predict([faulty, faulty / MISSING])
    by_file = {_rel(faulty, r["path"]): r for r in results}
    assert len(by_file) == 12 + len(ODD_BUT_USABLE) + len(BAD) + 1
    for rel, reason in BAD.items():
        assert reason in by_file[rel]["error"] and "label" not in by_file[rel], rel
    assert "does not exist" in by_file[MISSING]["error"]
    for rel in ODD_BUT_USABLE:
        r = by_file[rel]
        assert r["label"] in ("hiss", "solo", "tone") and r["duration_s"] == pytest.approx(1.2, abs=0.01), rel
    # the command line: one JSON answer per file; exit status 1 only when no file could be predicted
    out = runner.invoke(app, ["predict", str(run), str(faulty / "tone")])
    assert out.exit_code == 0 and len(json.loads(out.stdout)) == 6 + 6 + 2  # good, bad, odd (tone only)
    bad_only = [str(faulty / rel) for rel in BAD]
    out = runner.invoke(app, ["predict", str(run), *bad_only, "--format", "csv"])
    assert out.exit_code == 1
    rows = list(csv.DictReader(out.stdout.splitlines()))
    assert [r["error"] != "" for r in rows] == [True] * len(BAD)


def test_serve_refuses_each_bad_upload_with_a_reason_and_serves_the_rest(faulty_run: tuple[Path, str],
                                                                          faulty: Path):
    pytest.importorskip("earmark.serve.app")
    from fastapi.testclient import TestClient

    from earmark.serve.app import create_app

    run, _ = faulty_run
    client = TestClient(create_app(run))
    for rel in (*BAD, *ODD_BUT_USABLE):
        path = faulty / rel
        res = client.post("/v1/predict", files={"file": (path.name, path.read_bytes())})
        if rel in ODD_BUT_USABLE:
            assert res.status_code == 200, (rel, res.text)
            assert res.json()["label"] in ("hiss", "solo", "tone") and res.json()["filename"] == path.name
        else:
            assert 400 <= res.status_code < 500, (rel, res.status_code)
            body = res.json()
            assert body["error"] and path.name in body["detail"], (rel, body)
            if rel != "hiss/empty.wav":  # an empty upload is refused before decoding
                assert BAD[rel] in body["detail"], (rel, body)
    assert client.get("/healthz").status_code == 200  # still serving


def test_a_class_folder_with_one_file_trains_only(tmp_path: Path, caplog):
    from earmark.config import SplitConfig
    from earmark.data.sources import discover
    from earmark.data.split import make_folds

    rng = np.random.default_rng(1)
    for label, n in (("a", 5), ("b", 5), ("c", 1)):
        for k in range(n):
            write_wav(tmp_path / label / f"{k}.wav", synth("tone", 1.0, SR, rng), SR)
    manifest = discover(tmp_path)
    with caplog.at_level(logging.WARNING):
        (fold,) = make_folds(manifest, SplitConfig(), seed=0)
    only = next(i for i, it in enumerate(manifest.items) if it.label == "c")
    assert only in fold.train and only not in fold.test and only not in fold.val
    assert {manifest.items[i].label for i in fold.test} == {"a", "b"}


def test_formats_that_need_ffmpeg_say_so_when_it_is_missing(tmp_path: Path, monkeypatch):
    from earmark.audio import io
    from earmark.errors import AudioDecodeError

    path = tmp_path / "song.m4a"
    path.write_bytes(b"\x00\x00\x00\x18ftypM4A " + bytes(100))
    monkeypatch.setattr(io, "ffmpeg_available", lambda: False)
    with pytest.raises(AudioDecodeError, match=r"song.m4a: format .m4a needs ffmpeg, which is not installed"):
        io.load_audio(path, SR)
