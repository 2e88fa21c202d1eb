"""Fine-tuning the pretrained mn04 through the normal `earmark train`: a few ESC-10 files, held-out files."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from earmark.config import load_recipe
from earmark.errors import ConfigError
from earmark.models.efficientat import efficientat_features
from earmark.models.net import build_net

from ..conftest import shared_dataset, shared_weights

CLASSES = ("dog", "rain", "crying_baby")


def esc10_subset(root: Path, per_class: int = 8, test_per_class: int = 3) -> Path:
    """A manifest over ``per_class`` ESC-10 clips of three classes: ``test_per_class`` of fold 5 to test, the
    rest from folds 1-4 to train."""
    esc10 = shared_dataset("esc10")
    with open(esc10 / "manifest.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["label"] in CLASSES]
    picked = []
    for label in CLASSES:
        mine = [r for r in rows if r["label"] == label]
        test = [r for r in mine if r["fold"] == "5"][:test_per_class]
        train = [r for r in mine if r["fold"] != "5"][: per_class - len(test)]
        picked += [(r, "test") for r in test] + [(r, "train") for r in train]
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "manifest.csv", "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["path", "label", "split"])
        out.writerows([str(esc10 / r["path"]), r["label"], split] for r, split in picked)
    return root


def test_a_pretrained_mn_gets_its_front_end_and_a_weights_path_loads_the_same(tmp_path):
    recipe = load_recipe("default", ["model.name=mn04", "model.pretrained=mn04_as"])
    assert recipe.features == efficientat_features()[0] and recipe.audio.sample_rate == 32000
    scratch = load_recipe("default", ["model.name=mn04"])  # from scratch: the recipe's own features stay
    assert scratch.features.n_mels == 64 and scratch.audio.sample_rate == 16000
    by_path = load_recipe("default", ["model.name=mn04", f"model.weights={tmp_path / 'w.pt'}"])
    assert by_path.model.pretrained == str(tmp_path / "w.pt") and by_path.features.mel_filters == "kaldi"
    with pytest.raises(ConfigError, match="freeze_blocks"):
        load_recipe("pretrained", ["model.freeze_blocks=-1"])
    with pytest.raises(ConfigError, match="set model.name=mn04"):  # a checkpoint of another architecture
        load_recipe("default", ["model.pretrained=mn04_as"])


def test_the_checkpoint_loads_except_the_head_and_blocks_freeze(monkeypatch):
    monkeypatch.setenv("EARMARK_WEIGHTS", str(shared_weights("mn04_as_mAP_432.pt").parent))
    from earmark.models.pretrained import freeze_first_blocks, load_pretrained
    from earmark.training.module import ClassifierModule

    recipe = load_recipe("pretrained", ["model.freeze_blocks=4", "train.head_lr_mult=10"])
    net = build_net(recipe, num_classes=3)
    report = load_pretrained(net.backbone, recipe.model.pretrained)
    assert report.checkpoint == "mn04_as" and len(report.loaded) == 310
    assert set(report.skipped) == {"classifier.5.weight", "classifier.5.bias"} and not report.unused
    assert all("classifier head" in why for why in report.skipped.values())
    module = ClassifierModule(net, recipe, 3, steps_per_epoch=1)
    assert module.frozen_blocks == ["features.0", "features.1", "features.2", "features.3"]
    assert not any(p.requires_grad for p in net.backbone.features[3].parameters())
    assert all(p.requires_grad for p in net.backbone.features[4].parameters())
    [opt], _ = module.configure_optimizers()
    body, head = opt.param_groups
    assert head["lr"] == pytest.approx(10 * body["lr"]) and len(head["params"]) == 2
    assert {id(p) for p in head["params"]} == {id(p) for p in net.backbone.get_classifier().parameters()}
    with pytest.raises(ConfigError, match="17 blocks"):
        freeze_first_blocks(net.backbone, 18)


@pytest.mark.slow
def test_a_short_fine_tune_on_esc10_files_beats_chance(tmp_path, monkeypatch):
    import earmark

    monkeypatch.setenv("EARMARK_WEIGHTS", str(shared_weights("mn04_as_mAP_432.pt").parent))
    data = esc10_subset(tmp_path / "esc10")
    out = tmp_path / "run"
    # 3 epochs of 15 clips in 1 s windows (~30 steps): ~2.5 minutes on a busy 2-core CPU
    earmark.train(data, out, "pretrained", ["train.epochs=3", "segment.length_s=1.0", "segment.hop_s=1.0",
                                            "train.batch_size=8", "train.lr=2e-4", "train.loggers=[csv]"],
                  show_progress=False)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["track_accuracy"] >= 0.75, metrics  # 9 held-out clips of 3 classes: chance is 1/3
    fit = json.loads(next(out.rglob("fit.json")).read_text())
    assert fit["pretrained"]["checkpoint"] == "mn04_as" and fit["pretrained"]["loaded"] == 310
    assert set(fit["pretrained"]["skipped"]) == {"classifier.5.weight", "classifier.5.bias"}
    with open(data / "manifest.csv", newline="") as fh:
        test = [r for r in csv.DictReader(fh) if r["split"] == "test"][:2]
    answers = earmark.predict(out, [r["path"] for r in test])  # a fine-tuned mn04 predicts like any run
    assert [a["label"] for a in answers] and all(a["label"] in CLASSES for a in answers)
