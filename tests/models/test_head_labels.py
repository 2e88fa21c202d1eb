"""A head started from the pretrained AudioSet head's rows (``model.head_labels``): the same logits as the
tagger for those labels, clear errors, and a zero-shot run (``train.epochs=0``) on real ESC-10 clips."""
from __future__ import annotations

import csv
import json

import pytest
import torch

from earmark.config import load_recipe
from earmark.errors import ConfigError
from earmark.models.audioset import audioset_labels
from earmark.models.efficientat import build_mn
from earmark.models.pretrained import head_from_labels, load_pretrained

from ..conftest import shared_dataset

#: ESC-10's classes and the AudioSet label each is named after
ESC10_LABELS = {"dog": "Dog", "rooster": "Chicken, rooster", "rain": "Rain", "sea_waves": "Waves, surf",
                "crackling_fire": "Fire", "crying_baby": "Baby cry, infant cry", "sneezing": "Sneeze",
                "clock_tick": "Tick-tock", "helicopter": "Helicopter", "chainsaw": "Chainsaw"}


def test_the_new_head_gives_the_pretrained_logits_of_the_named_labels(weights_env):
    full = build_mn(0.4, num_classes=527).eval()
    load_pretrained(full, "mn04_as")
    two = build_mn(0.4, num_classes=2).eval()
    load_pretrained(two, "mn04_as")
    chosen = head_from_labels(two, "mn04_as", ["female", "male"],
                              {"female": "Female singing", "male": "male singing"})  # case does not matter
    assert chosen == {"female": "Female singing", "male": "Male singing"}
    names = audioset_labels()
    rows = [names.index("Female singing"), names.index("Male singing")]
    x = torch.randn(3, 1, 128, 250)
    with torch.no_grad():
        assert torch.allclose(two(x), full(x)[:, rows], atol=1e-5)


def test_a_label_the_checkpoint_lacks_or_a_class_without_one_is_a_clear_error(weights_env):
    net = build_mn(0.4, num_classes=2)
    with pytest.raises(ConfigError, match="did you mean 'Female singing'"):
        head_from_labels(net, "mn04_as", ["f", "m"], {"f": "Female singnig", "m": "Male singing"})
    with pytest.raises(ConfigError, match="no label for class"):
        head_from_labels(net, "mn04_as", ["f", "m"], {"f": "Female singing"})


def test_a_class_without_a_label_keeps_a_new_row_when_training_follows(weights_env):
    net = build_mn(0.4, num_classes=3).eval()
    fresh = net.get_classifier().weight.detach().clone()
    chosen = head_from_labels(net, "mn04_as", ["female", "duet", "male"],
                              {"female": "Female singing", "male": "Male singing"}, require_all=False)
    assert chosen == {"female": "Female singing", "male": "Male singing"}
    w = net.get_classifier().weight.detach()
    assert torch.equal(w[1], fresh[1]) and not torch.equal(w[0], fresh[0]) and not torch.equal(w[2], fresh[2])


def test_zero_epochs_needs_head_labels_and_head_labels_need_pretrained_weights():
    with pytest.raises(ConfigError, match="train.epochs=0"):
        load_recipe("pretrained", ["train.epochs=0"])
    with pytest.raises(ConfigError, match="model.pretrained"):
        load_recipe("default", ["model.head_labels={a: Speech, b: Music}"])
    recipe = load_recipe("pretrained", ["train.epochs=0", "model.head_labels={a: Speech, b: Music}"])
    assert recipe.model.head_labels == {"a": "Speech", "b": "Music"}


@pytest.mark.slow
def test_a_zero_shot_run_names_real_esc10_clips_without_training(weights_env, tmp_path):
    """Every ESC-10 class is an AudioSet label: with the head started from those rows and no training, the run
    is a working classifier (chance: 10 %)."""
    import earmark
    from earmark.inference.predictor import Predictor

    esc10 = shared_dataset("esc10")
    with open(esc10 / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    picked = []
    for label in ESC10_LABELS:
        mine = [r for r in rows if r["label"] == label]
        picked += [(mine[0], "train")] + [(r, "test") for r in mine[-2:]]
    data = tmp_path / "data"
    data.mkdir()
    with open(data / "manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "split"])
        w.writerows([str(esc10 / r["path"]), r["label"], split] for r, split in picked)
    mapping = "{" + ", ".join(f"{k}: '{v}'" for k, v in ESC10_LABELS.items()) + "}"
    out = tmp_path / "run"
    earmark.train(data, out, "pretrained", ["train.epochs=0", f"model.head_labels={mapping}", "data.workers=1",
                                            "segment.length_s=5", "segment.hop_s=2.5"], show_progress=False)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["track_accuracy"] >= 0.85  # 20 test clips of 10 classes (all 400 clips, whole: 95.8 %)
    fit = json.loads(next(out.rglob("fit.json")).read_text())
    assert fit["epochs_run"] == 0 and fit["pretrained"]["head_labels"]["dog"] == "Dog"
    answer = Predictor(out).predict_file(str(esc10 / picked[1][0]["path"]))
    assert answer["label"] == picked[1][0]["label"]
    from earmark.inference.onnx import export_and_verify

    _, diff = export_and_verify(out, tmp_path / "zero-shot.onnx")  # one graph, waveform to probabilities
    assert diff is not None and diff < 1e-4
