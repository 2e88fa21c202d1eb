"""``earmark embed``: per-file and per-window embeddings of a dataset, with their manifest."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from earmark.cli import app
from earmark.inference.embeddings import embed_dataset

from ..conftest import tone, write_wav

runner = CliRunner()


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classes: tones of 3 s and 12 s (16 kHz), noise of 4 s (32 kHz), and one file that is not audio."""
    root = tmp_path_factory.mktemp("embed") / "data"
    rng = np.random.default_rng(0)
    write_wav(root / "tone" / "a.wav", tone(440, 3.0), 16000)
    write_wav(root / "tone" / "b.wav", tone(880, 12.0), 16000)
    write_wav(root / "noise" / "c.wav", (0.1 * rng.standard_normal(4 * 32000)).astype(np.float32), 32000)
    (root / "noise" / "broken.wav").write_bytes(b"RIFF but not really")
    return root


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_embed_writes_files_segments_and_manifest(small_data: Path, tmp_path: Path, weights_env: Path):
    info = embed_dataset(small_data, tmp_path, "mn04_as", segments=True, show_progress=False)
    files = np.load(tmp_path / "embeddings.npy")
    segs = np.load(tmp_path / "segment_embeddings.npy")
    manifest, seg_rows = read_csv(tmp_path / "manifest.csv"), read_csv(tmp_path / "segments.csv")
    assert files.shape == (3, 384) and files.dtype == np.float32 and info["embed_dim"] == 384
    assert [Path(r["path"]).name for r in manifest] == ["c.wav", "a.wav", "b.wav"]  # discovery order
    assert [r["label"] for r in manifest] == ["noise", "tone", "tone"]
    assert [r["n_segments"] for r in manifest] == ["1", "1", "2"]  # 12 s: windows at 0 s and 2 s (end-aligned)
    assert float(manifest[2]["end_s"]) == pytest.approx(12.0)
    assert segs.shape == (4, 384) and len(seg_rows) == 4
    last = [r for r in seg_rows if r["file_row"] == "2"]
    assert [(float(r["start_s"]), float(r["end_s"])) for r in last] == [(0.0, 10.0), (2.0, 12.0)]
    np.testing.assert_allclose(files[2], segs[[int(r["row"]) for r in last]].mean(0), rtol=1e-5, atol=1e-6)
    assert float(manifest[1]["end_s"]) == pytest.approx(3.0)  # the short file: one unpadded window
    # different sounds, different embeddings; the same kind of sound, closer ones
    cos = (lambda a, b: float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)))
    assert cos(files[1], files[2]) > cos(files[0], files[1])
    skipped = read_csv(tmp_path / "skipped.csv")
    assert [Path(r["path"]).name for r in skipped] == ["broken.wav"]
    meta = json.loads((tmp_path / "info.json").read_text())
    assert meta["sha256"].startswith("899a8c62") and meta["n_files"] == 3 and meta["n_segments"] == 4


def test_embed_cli_without_segments(small_data: Path, tmp_path: Path, weights_env: Path):
    out = tmp_path / "emb"
    res = runner.invoke(app, ["embed", str(small_data), "--out", str(out), "--window", "2", "--hop", "1"])
    assert res.exit_code == 0, res.output
    assert "3 files" in res.stdout and "1 skipped" in res.stdout
    assert np.load(out / "embeddings.npy").shape == (3, 384)
    assert not (out / "segment_embeddings.npy").exists()
    assert [r["n_segments"] for r in read_csv(out / "manifest.csv")] == ["3", "2", "11"]
