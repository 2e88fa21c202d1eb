"""Loudness: a trained run gives the same answers to the same clips played 30 dB quieter (issue 17).

The default front-end floors each segment's energies 80 dB below its maximum and subtracts its largest log
energy, so a gain changes nothing the model sees (docs/default-recipe.md, docs/BENCHMARKS.md "Loudness").
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from earmark import Predictor

from ..conftest import shared_dataset, write_wav

QUIETER = 10 ** (-30 / 20)


def _clips(data: Path, per_class: int) -> list[Path]:
    by_class: dict[str, list[Path]] = {}
    for p in sorted(data.rglob("*")):
        if p.suffix in {".wav", ".flac"}:
            by_class.setdefault(p.parent.name, []).append(p)
    return [p for files in by_class.values() for p in files[:per_class]]


def test_trained_run_answers_the_same_at_minus_30_db(trained_run: Path, synth_data: Path, tmp_path: Path):
    predictor = Predictor(trained_run)
    assert predictor.recipe.features.log_floor_db == 80.0 and predictor.recipe.features.segment_norm == "max"
    clips = _clips(synth_data, 4)
    quiet = []
    for p in clips:  # written to disk as 16-bit PCM, as a quieter recording would be
        wave, sr = sf.read(p, dtype="float32")
        quiet.append(write_wav(tmp_path / p.parent.name / p.name, wave * QUIETER, sr, subtype="PCM_16"))
    loud_results, quiet_results = predictor.predict(clips), predictor.predict(quiet)
    assert [r["label"] for r in quiet_results] == [r["label"] for r in loud_results]
    for a, b in zip(loud_results, quiet_results):
        diff = max(abs(a["probabilities"][k] - b["probabilities"][k]) for k in a["probabilities"])
        assert diff < 0.02, (a["path"], diff)
    # the answers are the trained ones, not a constant: the synthesized classes are told apart
    assert np.mean([r["label"] == Path(r["path"]).parent.name for r in loud_results]) >= 0.75


def test_segment_probabilities_do_not_depend_on_the_level(trained_run: Path, synth_data: Path):
    predictor = Predictor(trained_run)
    wave, _ = sf.read(_clips(synth_data, 1)[0], dtype="float32")
    segs = np.stack([wave[:16000], wave[-16000:], np.pad(wave[:6000], (0, 10000))])  # one zero-padded
    ref = predictor.segment_probs(segs)
    for gain_db in (-20.0, -30.0, -40.0, -60.0):
        got = predictor.segment_probs(segs * np.float32(10 ** (gain_db / 20)))
        np.testing.assert_allclose(got, ref, atol=1e-3)


def test_real_clips_answer_the_same_at_minus_30_db(esc10_cv_run: Path):
    data = shared_dataset("esc10")
    predictor = Predictor(esc10_cv_run)
    for p in _clips(data / "audio", 400)[:12]:
        wave, sr = sf.read(p, dtype="float32")
        loud = predictor.predict_waveform(wave, sr)
        quiet = predictor.predict_waveform(wave * np.float32(QUIETER), sr)
        assert quiet["label"] == loud["label"], p.name
        diff = max(abs(loud["probabilities"][k] - quiet["probabilities"][k]) for k in loud["probabilities"])
        assert diff < 1e-3, (p.name, diff)


def test_old_front_end_run_keeps_its_behaviour(trained_run: Path, tmp_path: Path):
    """A run saved before recipe format 2 predicts with the fixed floor it was trained with."""
    import shutil

    import yaml

    old = tmp_path / "old"
    shutil.copytree(trained_run, old)
    cfg = yaml.safe_load((old / "config.yaml").read_text())
    del cfg["recipe_format"], cfg["features"]["log_floor_db"], cfg["features"]["segment_norm"]
    (old / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    frontend = Predictor(old).members[0].net.frontend
    assert frontend.log_floor_db is None and frontend.segment_norm == "none" and frontend.log_floor == 1e-6
