"""The built-in recipes of the published systems: what they set, and a tiny end-to-end run of each.

Each smoke test runs ``earmark train DATA --recipe NAME`` (through :func:`earmark.jobs.train.train`) on a few
files of ../shared/data per class, one epoch, two members where the recipe has an ensemble, then checks
the run folder and predicts. The backbones are the recipes' own at full size, with one exception said
where it is made (ResNeXt-101 on 512 x 512 images).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from earmark.cli import app
from earmark.config import load_recipe, recipe_names
from earmark.jobs.train import train

from .conftest import shared_dataset

PUBLISHED = ["singer-gender-published", "genre-classical-vs-deep", "genre-crnn", "genre-resnet", "keyword-5fold"]

#: every tiny run: one epoch, CSV logs only, small evaluation batches (the comparison times a few of them)
TINY = ["train.epochs=1", "train.loggers=[csv]", "eval.batch_size=16", "data.workers=2"]

#: files per class for recipes with variants: 8 gives 2 test, 1 validation and 5 training files per class with
#: an 80/20 split and 10% validation (fewer leave the validation side, which chooses the variant, empty)
VARIANT_FILES = 8

RUN_FILES = ("run.json", "config.yaml", "labels.json", "members.json", "metrics.json", "report.md",
             "confusion_matrix.png", "confusion_matrix.csv", "skipped.csv", "splits.csv",
             "test_predictions.csv")


# ------------------------------------------------------------------------------------ recipes as written


def test_every_published_recipe_is_listed_with_a_one_line_description():
    assert set(PUBLISHED) <= set(recipe_names())
    out = CliRunner().invoke(app, ["recipes"])
    assert out.exit_code == 0, out.output
    for name in PUBLISHED:
        (line,) = [ln for ln in out.stdout.splitlines() if ln.split()[0] == name]
        first = load_recipe(name).description.strip().splitlines()[0]
        assert first in line and 40 < len(first) <= 120
        assert len(load_recipe(name).description.strip().splitlines()) > 1  # and a longer explanation


def _input_shape(recipe_name: str, variant: str | None = None) -> tuple[int, ...]:
    from earmark.models.net import build_net

    r = load_recipe(recipe_name)
    r = r.variant(variant) if variant else r
    net = build_net(r, num_classes=4)
    seg = torch.zeros(1, int(round(r.segment.length_s * r.audio.sample_rate)))
    with torch.no_grad():
        return tuple(net.features(seg).shape)


@pytest.mark.parametrize("name,variant,shape", [
    ("singer-gender-published", None, (1, 1, 299, 40)),        # 3 s at 16 kHz, 25/10 ms, 40 bands
    ("genre-crnn", None, (1, 1, 129, 100)),                    # about 130 frames x 100 bands
    ("keyword-5fold", None, (1, 1, 99, 128)),                  # 1 s, 128 bands
    ("genre-resnet", "resnet18", (1, 3, 224, 224)),            # an image for an ImageNet backbone
    ("genre-classical-vs-deep", "mobilenetv2", (1, 3, 224, 224)),
    ("genre-classical-vs-deep", "raw1d", (1, 3 * 22050)),      # the raw waveform, 3 s windows
])
def test_recipes_feed_their_models_the_published_input(name: str, variant: str | None,
                                                        shape: tuple[int, ...]):
    assert _input_shape(name, variant) == shape


def test_recipe_settings_match_the_systems():
    sg = load_recipe("singer-gender-published")
    assert (sg.audio.separation, sg.model.name, sg.train.optimizer, sg.train.lr, sg.train.weight_decay) == \
        ("repet", "resnet34", "adamw", 3e-4, 1e-5)
    assert (sg.split.method, sg.split.test_size, sg.split_seed, sg.ensemble.members, sg.ensemble.voting) == \
        ("holdout", 0.3, 8, 20, "soft")
    crnn = load_recipe("genre-crnn")
    assert (crnn.segment.length_s, crnn.segment.hop_s, crnn.eval.aggregate, crnn.train.schedule.name) == \
        (3.0, 2.0, "sum", "plateau")
    assert crnn.split.test_size == 0.1 and 0.9 * crnn.split.val_size == pytest.approx(0.1, abs=0.001)
    adv = load_recipe("genre-resnet").variant("advanced")
    assert (adv.model.name, adv.features.image_size, adv.train.epochs, adv.train.schedule.warmup_epochs) == \
        ("resnext101_32x8d", 512, 30, 5)
    sched = adv.train.schedule
    assert (sched.name, sched.step_size, sched.gamma) == ("step", 10, 0.1)
    assert min(adv.augment.specaugment.p, adv.augment.noise.p, adv.augment.gain.p) > 0
    kw = load_recipe("keyword-5fold")
    assert (kw.ensemble.kind, kw.ensemble.members, kw.ensemble.tta) == ("kfold", 5, 4)
    assert kw.model.name == "res2next50"
    assert (kw.train.label_smoothing, kw.train.hard_mining) == (0.1, 0.9) and 64 <= kw.features.n_mels <= 224
    cvd = load_recipe("genre-classical-vs-deep")
    assert set(cvd.variants) == {"logreg", "knn", "gnb", "svm", "raw1d", "mobilenetv2"}
    assert cvd.split.test_size == 0.2


# ------------------------------------------------------------------------------------------ smoke runs


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: on a shared 2-core machine, a second thread mostly spins waiting for a core
    (measured: 47x the CPU time of one thread for Res2NeXt-50 inference under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)



def _labels_of(data: Path) -> dict[str, str]:
    with open(data / "manifest.csv", newline="") as f:
        return {row["path"]: row["label"] for row in csv.DictReader(f)}


def _check_run(run: Path, members: int) -> dict:
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "complete"
    for name in RUN_FILES:
        assert (run / name).is_file(), f"{run}: {name} missing"
    entries = json.loads((run / "members.json").read_text())["members"]
    assert len(entries) == members
    for e in entries:
        assert (run / e["dir"] / "member.json").is_file()
    m = json.loads((run / "metrics.json").read_text())
    for key in ("segment_accuracy", "track_accuracy", "track_macro_f1"):
        assert 0.0 <= m[key] <= 1.0
    return m


def _check_predict(run: Path, data: Path, n: int = 2) -> None:
    import earmark

    labels = json.loads((run / "labels.json").read_text()) if (run / "labels.json").is_file() else None
    paths = sorted(_labels_of(data))[:n]
    results = earmark.Predictor(run).predict([data / p for p in paths])
    assert len(results) == n
    for r in results:
        assert "error" not in r, r
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        if labels:
            assert r["label"] in labels


def _check_variants(run: Path, variants: list[str], members: int = 1) -> dict:
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "complete" and info["variants"] == variants
    m = json.loads((run / "metrics.json").read_text())
    assert m["best_variant"] in variants and set(m["variants"]) == set(variants)
    best_val = max(v["val_segment_accuracy"] for v in m["variants"].values())
    assert m["variants"][m["best_variant"]]["val_segment_accuracy"] == best_val  # chosen on validation data
    for v in variants:
        _check_run(run / "variants" / v, members)
    table = (run / "comparison.md").read_text()
    for v in variants:
        assert f"/{v} " in table or f"| {v} " in table, (v, table)
    assert (run / "comparison.csv").is_file() and (run / "comparison.png").is_file()
    return m


@pytest.mark.slow
def test_singer_gender_smoke(tmp_path: Path):
    data = shared_dataset("esc10")
    run = train(data, tmp_path / "run", "singer-gender-published",
                [*TINY, "data.max_files_per_class=3", "ensemble.members=2"], show_progress=False).path
    m = _check_run(run, members=2)
    assert m["split_method"] == "holdout"
    cfg = load_recipe(str(run / "config.yaml"))
    assert cfg.audio.separation == "repet" and cfg.model.name == "resnet34"
    _check_predict(run, data)  # prediction separates the vocals too (the run's audio settings)


@pytest.mark.slow
def test_genre_classical_vs_deep_smoke(tmp_path: Path):
    data = shared_dataset("esc10")
    # ESC-10 clips are 5 s: whole-clip examples of 5 s instead of FMA's 30 s (the raw1d variant keeps 3 s)
    run = train(data, tmp_path / "run", "genre-classical-vs-deep",
                [*TINY, f"data.max_files_per_class={VARIANT_FILES}", "segment.length_s=5", "segment.hop_s=5"],
                show_progress=False).path
    variants = ["logreg", "knn", "gnb", "svm", "raw1d", "mobilenetv2"]
    m = _check_variants(run, variants)
    rows = list(csv.DictReader(open(run / "comparison.csv", newline="")))
    assert {r["model"] for r in rows} == set(variants) and len(rows) == 6
    assert {r["family"] for r in rows} >= {"classical", "raw1d", "backbone"}
    _check_predict(run, data)  # through the best variant
    assert m["best_variant"] in variants


@pytest.mark.slow
def test_genre_crnn_smoke(tmp_path: Path):
    data = shared_dataset("esc10")
    # 6 files per class: with a 10% test side, fewer would leave no test track in a class of 10
    run = train(data, tmp_path / "run", "genre-crnn", [*TINY, "data.max_files_per_class=6"],
                show_progress=False).path
    m = _check_run(run, members=1)
    assert m["aggregate"] == "sum"
    fold = m["folds"]["holdout"]
    # a 5 s clip gives slices at 0 s and 2 s (3 s long, 1 s overlap): two per track
    assert fold["n_test_segments"] == 2 * fold["n_test_tracks"] and fold["n_test_tracks"] == 10
    report = (run / "report.md").read_text()
    assert "segment accuracy" in report and "track accuracy" in report
    splits = list(csv.DictReader(open(run / "splits.csv", newline="")))
    sides = [r["holdout"] for r in splits]
    assert sides.count("test") == 10 and sides.count("val") == 10 and sides.count("train") == 40  # 80/10/10
    _check_predict(run, data)


@pytest.mark.slow
def test_genre_resnet_smoke(tmp_path: Path):
    from earmark.config import apply_overrides, recipe_from_dict

    data = shared_dataset("esc10")
    recipe = load_recipe("genre-resnet", [*TINY, f"data.max_files_per_class={VARIANT_FILES}",
                                          "segment.length_s=5", "segment.hop_s=5"])
    # ResNeXt-101 32x8d on 512 x 512 images costs ~86 GFLOPs per forward pass: minutes per image batch on
    # this 2-core CPU. The smoke run keeps the architecture but feeds it 64 x 64 images. A variant's own
    # settings win over --set, so its 30 epochs are brought down to 1 inside the variant.
    d = recipe.model_dump(mode="json")
    d["variants"]["advanced"] = [*d["variants"]["advanced"], "features.image_size=64", "train.epochs=1"]
    recipe = recipe_from_dict(apply_overrides(d, []))
    run = train(data, tmp_path / "run", recipe, show_progress=False).path
    _check_variants(run, ["resnet18", "advanced"])
    adv = load_recipe(str(run / "variants" / "advanced" / "config.yaml"))
    assert adv.model.name == "resnext101_32x8d" and adv.train.schedule.name == "step"
    member = run / "variants" / "advanced" / "folds" / "holdout" / "members" / "0"
    fit = json.loads((member / "fit.json").read_text())
    assert {a["name"] for a in fit["augmentation"]} >= {"SpecAugment", "GaussianNoise", "Gain"}
    _check_predict(run, data)


@pytest.mark.slow
def test_keyword_5fold_smoke(tmp_path: Path):
    data = shared_dataset("fsdd")
    run = train(data, tmp_path / "run", "keyword-5fold",
                [*TINY, "data.max_files_per_class=6", "ensemble.members=2"], show_progress=False).path
    m = _check_run(run, members=2)
    assert m["split_method"] == "split"  # FSDD's own train/test column
    entries = json.loads((run / "members.json").read_text())["members"]
    oof_files = []
    for e in entries:
        member = json.loads((run / e["dir"] / "member.json").read_text())
        assert member["oof_files"] > 0 and 0.0 <= member["oof_segment_accuracy"] <= 1.0
        oof_files.append(set(np.load(run / e["dir"] / "oof_files.npy").tolist()))
    assert not (oof_files[0] & oof_files[1])  # each member validated on its own inner fold
    assert load_recipe(str(run / "config.yaml")).ensemble.tta == 4
    _check_predict(run, data)
