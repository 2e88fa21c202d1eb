"""Ensembles at tiny scale: seeds and k-fold members, voting, TTA, ensemble-size report, distillation."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import earmark
from earmark.ensemble import with_tta
from earmark.training.module import distillation_loss

from .conftest import FAST


@pytest.fixture(scope="module")
def seeds_run(synth_data: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ens") / "seeds"
    earmark.train(synth_data, out, "default", FAST + ["train.epochs=2", "ensemble.members=3", "split.val_size=0.15",
                                                      "ensemble.weighted=true"], show_progress=False)
    return out


def test_seed_members_differ_and_vote_as_one_model(seeds_run: Path, synth_data: Path):
    members = json.loads((seeds_run / "members.json").read_text())["members"]
    assert [m["seed"] for m in members] == [0, 1000, 2000]
    assert len({m["weight"] for m in members}) > 1  # weighted by validation score
    w = [torch.load(seeds_run / m["dir"] / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
         ["net.backbone.head.weight"] for m in members]
    assert not torch.equal(w[0], w[1])
    (res,) = earmark.Predictor(seeds_run).predict([synth_data / "tone" / "tone_01.wav"])
    assert res["label"] == "tone"  # one answer per file, whatever the number of members


def test_accuracy_against_ensemble_size_report(seeds_run: Path):
    table = json.loads((seeds_run / "ensemble_size.json").read_text())
    assert [r["members"] for r in table] == [1, 2, 3]
    probs = np.load(seeds_run / "folds" / "holdout" / "test_member_probs.npy")
    assert probs.shape[0] == 3
    assert all(0 <= r["soft"] <= 1 and 0 <= r["hard"] <= 1 for r in table)
    assert (seeds_run / "ensemble_size.png").is_file() and "Ensemble size" in (seeds_run / "report.md").read_text()


def test_kfold_members_keep_out_of_fold_predictions(synth_data: Path, tmp_path: Path):
    run = earmark.train(synth_data, tmp_path / "kf", "default",
                        FAST + ["train.epochs=1", "ensemble.members=3", "ensemble.kind=kfold"], show_progress=False)
    folder = run.path / "folds" / "holdout" / "members"
    oof_files = [np.load(folder / str(k) / "oof_files.npy") for k in range(3)]
    sets = [set(f.tolist()) for f in oof_files]
    assert all(not (a & b) for i, a in enumerate(sets) for b in sets[i + 1:])  # each file out-of-fold once
    splits = (run.path / "splits.csv").read_text().splitlines()[1:]
    assert sum(len(s) for s in sets) == sum(not r.endswith(",test") for r in splits)
    for k in range(3):
        p = np.load(folder / str(k) / "oof_probs.npy")
        assert p.shape == (len(oof_files[k]), 3) and np.allclose(p.sum(1), 1, atol=1e-4)
        assert json.loads((folder / str(k) / "member.json").read_text())["oof_segment_accuracy"] is not None


def test_hard_voting_run_and_tta_predict(seeds_run: Path, tmp_path: Path, synth_data: Path):
    p = earmark.Predictor(seeds_run)
    segs = np.random.default_rng(0).standard_normal((5, p.segment_samples)).astype(np.float32) * 0.1
    base = p.segment_probs(segs)
    p.recipe.ensemble.tta = 3
    tta = p.segment_probs(segs)
    assert tta.shape == base.shape and not np.allclose(tta, base)
    np.testing.assert_allclose(tta.sum(1), 1, atol=1e-5)


def test_with_tta_averages_shifted_copies():
    seen = []

    def fake(w):
        seen.append(w.copy())
        return np.stack([w[:, 0], 1 - w[:, 0]], axis=1)

    waves = np.arange(20, dtype=np.float32)[None, :] / 20
    out = with_tta(fake, waves, 3, 0.1)
    assert len(seen) == 3 and {int(s[0, 0] * 20) for s in seen} == {0, 2, 18}
    np.testing.assert_allclose(out, np.mean([fake(s) for s in seen[:3]], axis=0))


def test_distillation_loss_is_zero_when_student_matches_teacher():
    teacher = torch.tensor([[0.7, 0.2, 0.1]])
    match = distillation_loss(teacher.log(), teacher, temperature=2.0)
    off = distillation_loss(torch.tensor([[0.0, 5.0, 0.0]]), teacher, temperature=2.0)
    assert match.item() == pytest.approx(0.0, abs=1e-5) and off.item() > 0.5


def test_distill_trains_a_student_on_the_ensemble(seeds_run: Path, tmp_path: Path):
    from earmark.jobs.distill import distill

    student = distill(seeds_run, tmp_path / "student", model="cnn", overrides=["train.epochs=2"],
                      show_progress=False)
    report = json.loads((student.path / "distillation.json").read_text())
    assert report["teacher"]["members"] == 3 and report["student"]["members"] == 1
    # speeds are measured, not asserted faster here (a noisy machine can invert them; bench/ensemble.py times it)
    s, t = report["student"]["segments_per_second"], report["teacher"]["segments_per_second"]
    assert s > 0 and t > 0 and report["speedup"] == pytest.approx(s / t)
    assert json.loads((student.path / "members.json").read_text())["members"][0]["model"] == "cnn"
    # the student was trained on the teacher's folds, with the same test files
    assert (student.path / "splits.csv").read_text() == (seeds_run / "splits.csv").read_text()
    assert earmark.Predictor(student.path).labels == ["hiss", "knock", "tone"]
