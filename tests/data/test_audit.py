"""The dataset audit: duplicates (exact and re-encoded) across classes and splits, imbalance, the reports."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from earmark.cli import app
from earmark.config import AudioConfig
from earmark.data.audit import analyse, quick_warnings, write_audit
from earmark.data.sources import discover
from earmark.data.store import prepare_manifest
from earmark.demo import synth
from earmark.jobs.audit import audit

from ..conftest import shared_dataset, write_wav

SR = 16000


@pytest.fixture(scope="module")
def leaky(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A manifest dataset with a split column and planted problems:

    - hiss/h0.wav copied byte for byte as tone/t_dup.wav (exact, across classes, both in train);
    - knock/k1.wav (train) saved again as knock/k1_copy.flac (test): identical decoded audio across the split;
    - tone/t2.wav (train) re-encoded as MP3, 6 dB quieter and starting 0.1 s later, labelled hiss (test):
      a near-duplicate across classes and across the split;
    - 12 tone files against 3 knock files: imbalance.
    """
    root = tmp_path_factory.mktemp("leaky") / "data"
    rng = np.random.default_rng(7)
    rows = []
    for label, n in (("tone", 12), ("hiss", 5), ("knock", 3)):
        for k in range(n):
            rel = f"{label}/{label[0]}{k}.wav"
            write_wav(root / rel, synth(label, rng.uniform(1.5, 2.5), SR, rng), SR)
            rows.append((rel, label, "test" if k == n - 1 else "train"))
    shutil.copyfile(root / "hiss/h0.wav", root / "tone/t_dup.wav")
    rows.append(("tone/t_dup.wav", "tone", "train"))
    wave, _ = sf.read(str(root / "knock/k1.wav"), dtype="int16")
    sf.write(str(root / "knock/k1_copy.flac"), wave, SR, subtype="PCM_16")
    rows.append(("knock/k1_copy.flac", "knock", "test"))
    t2, _ = sf.read(str(root / "tone/t2.wav"), dtype="float32")
    sf.write(str(root / "hiss/from_t2.mp3"), 0.5 * t2[int(0.1 * SR):], SR)
    rows.append(("hiss/from_t2.mp3", "hiss", "test"))
    lines = "".join(f"{p},{lbl},{s}\n" for p, lbl, s in rows)
    (root / "manifest.csv").write_text("path,label,split\n" + lines)
    return root


@pytest.fixture(scope="module")
def report(leaky: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    r = audit(leaky, show_progress=False)
    write_audit(r, tmp_path_factory.mktemp("audit"))
    return r


def _paths(dup: dict) -> set[str]:
    return {f["path"] for f in dup["files"]}


def test_counts_durations_formats_and_rates(report: dict):
    assert report["n_files"] == 23 and report["n_usable"] == 23 and report["unreadable"] == []
    assert {c: v["files"] for c, v in report["classes"].items()} == {"hiss": 6, "knock": 4, "tone": 13}
    tone = report["classes"]["tone"]
    assert 1.5 <= tone["min_duration_s"] <= tone["mean_duration_s"] <= tone["max_duration_s"] <= 2.5
    assert report["formats"] == {".flac": 1, ".mp3": 1, ".wav": 21}
    assert report["sample_rates"] == {"16000": 23} and report["channels"] == {"1": 23}
    assert report["split_by"] == "split"


def test_exact_duplicates_found_across_formats_and_classes(report: dict):
    exact = sorted(report["exact_duplicates"], key=lambda d: sorted(_paths(d)))
    assert [_paths(d) for d in exact] == [{"hiss/h0.wav", "tone/t_dup.wav"},
                                          {"knock/k1.wav", "knock/k1_copy.flac"}]
    cross, straddle = exact
    assert cross["cross_class"] and not cross["straddles"] and cross["labels"] == ["hiss", "tone"]
    assert straddle["straddles"] and not straddle["cross_class"] and straddle["sides"] == ["test", "train"]


def test_reencoded_quieter_shifted_copy_is_a_near_duplicate(report: dict):
    (near,) = report["near_duplicates"]  # and nothing else among 20 distinct synthesized sounds
    assert _paths(near) == {"tone/t2.wav", "hiss/from_t2.mp3"}
    assert near["cross_class"] and near["straddles"]
    (pair,) = near["pairs"]
    assert pair["ber"] <= 0.21
    first = near["files"][pair["a"]]["path"]
    # the copy starts 0.1 s into the original (plus the MP3 codec's own delay of a few ms)
    assert abs(abs(pair["offset_s"]) - 0.1) < 0.03 and (pair["offset_s"] > 0) == (first == "tone/t2.wav")


def test_warnings_name_the_problems_and_what_to_do(report: dict):
    text = "\n".join(report["warnings"])
    assert len(report["warnings"]) == 4
    assert "1 set(s) of identical files carry different labels" in text and "tone/t_dup.wav" in text
    assert "1 set(s) of near-identical recordings" in text and "hiss/from_t2.mp3" in text
    assert "2 set(s) of duplicates (1 exact, 1 near) straddle the split column" in text
    assert "class imbalance: 'tone' has 13 usable files, 'knock' 4 (3.2x)" in text
    assert "train.class_balance" in text and "relabel or remove" in text


def test_report_files(report: dict, tmp_path: Path):
    paths = write_audit(report, tmp_path / "out")
    assert json.loads(paths["json"].read_text())["warnings"] == report["warnings"]
    md = paths["markdown"].read_text()
    assert "## Near-duplicates" in md and "hiss/from_t2.mp3" in md
    assert "![class balance](class_balance.png)" in md
    png = paths["plot"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_quick_warnings_read_the_store_without_decoding(leaky: Path, report: dict, monkeypatch):
    manifest = discover(leaky)
    store = prepare_manifest(manifest, AudioConfig(), show_progress=False)
    (store.folder / "fingerprints-v1.npz").unlink()  # fingerprints too come from the store's audio

    def no_decoding(*args, **kwargs):
        raise AssertionError("quick_warnings decoded a file")

    monkeypatch.setattr("earmark.audio.io.stream_audio", no_decoding)
    monkeypatch.setattr("earmark.audio.io.open_blocks", no_decoding)
    assert quick_warnings(manifest, store) == report["warnings"][-4:]
    assert (store.folder / "fingerprints-v1.npz").is_file()


def test_groups_without_split_columns_warn_about_possible_leaks(tmp_path: Path):
    rng = np.random.default_rng(3)
    for label in ("a", "b"):
        for k in range(3):
            sound = synth("knock" if label == "a" else "beep", 2.0, SR, rng)
            write_wav(tmp_path / "data" / label / f"{k}.wav", sound, SR)
    shutil.copyfile(tmp_path / "data/a/0.wav", tmp_path / "data/a/0_again.wav")
    manifest = discover(tmp_path / "data")
    r = analyse(manifest, prepare_manifest(manifest, AudioConfig(), show_progress=False))
    (w,) = r["warnings"]
    assert "are in different groups (file)" in w and "give each set one group" in w


def test_cli_audit_writes_the_reports_and_strict_fails_on_warnings(leaky: Path, tmp_path: Path):
    runner = CliRunner()
    res = runner.invoke(app, ["audit", str(leaky), "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    assert "duplicate sets: 2 exact, 1 near" in res.output and res.output.count("warning:") == 4
    assert (tmp_path / "a" / "audit.md").is_file() and (tmp_path / "a" / "class_balance.png").is_file()
    assert runner.invoke(app, ["audit", str(leaky), "--out", str(tmp_path / "b"), "--strict"]).exit_code == 1


@pytest.mark.slow
def test_esc10_audit_finds_its_known_near_duplicate():
    """Two ESC-10 clips with different freesound ids hold the same crackling fire (waveforms correlate at
    0.97)."""
    r = audit(shared_dataset("esc10"), show_progress=False)
    assert r["n_usable"] == 400 and r["split_by"] == "fold" and r["exact_duplicates"] == []
    pairs = [_paths(d) for d in r["near_duplicates"]]
    assert {"audio/2-28314-A-12.flac", "audio/2-30322-A-12.flac"} in pairs
    assert len(pairs) <= 3
