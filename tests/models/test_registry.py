"""Every registered model, checked at once (as timm does): forward, backward, shapes."""
import pytest
import torch

from earmark.config import load_recipe
from earmark.errors import ConfigError
from earmark.models.net import build_net
from earmark.models.registry import create_model, get_spec, list_models, register_model

# The two largest ImageNet backbones are slow on CPU; their forward pass is checked on a small input.
HEAVY = {"resnext101_32x8d", "res2next50"}


def test_registry_lists_the_promised_models():
    names = set(list_models())
    assert {"cnn", "cnn5", "crnn", "raw1d", "resnet18", "resnet34", "mobilenetv2", "efficientnet_b0",
            "res2next50", "resnext101_32x8d"} <= names
    assert list_models("res*") == sorted(n for n in names if n.startswith("res"))
    assert "cnn" in list_models(family="cnn") and "resnet34" not in list_models(family="cnn")


@pytest.mark.parametrize("name", [n for n in list_models() if get_spec(n).is_deep])
def test_every_network_trains_a_step_with_the_right_shapes(name):
    recipe = load_recipe("default", [f"model.name={name}", "features.n_mels=40"])
    net = build_net(recipe, num_classes=4)
    frames = 40 if name in HEAVY else 101
    wave = torch.randn(2, 160 * (frames - 1) + 400) * 0.1
    net.train()
    logits = net(wave)
    assert logits.shape == (2, 4)
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 3]))
    loss.backward()
    grads = [p.grad for p in net.backbone.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    net.eval()
    with torch.no_grad():
        probs = torch.softmax(net(wave), 1)
    torch.testing.assert_close(probs.sum(1), torch.ones(2))


CLASSICAL = list_models(family="classical")
PROBES = list_models(family="probe")  # frozen pretrained network + head: tests/models/test_probe.py


def test_the_parametrized_tests_cover_the_whole_registry():
    deep = [n for n in list_models() if get_spec(n).is_deep]
    assert sorted(deep + CLASSICAL + PROBES) == list_models() and PROBES == ["probe", "probe_mlp"]
    assert {"logreg", "knn", "gnb", "svm"} <= set(CLASSICAL)
    assert all(get_spec(n).family == "classical" and get_spec(n).input == "summary" for n in CLASSICAL)


@pytest.fixture(scope="module")
def three_sounds():
    """24 half-second segments of three classes (tones, noise, clicks) and their summary features."""
    import numpy as np

    from earmark.features.stats import SummaryFeatures, summarize

    rng = np.random.default_rng(0)
    t = np.arange(8000) / 16000
    tones = [0.3 * np.sin(2 * np.pi * rng.uniform(200, 600) * t) for _ in range(8)]
    noise = [0.1 * rng.standard_normal(8000) for _ in range(8)]
    clicks = [np.where(np.arange(8000) % int(rng.uniform(800, 1600)) < 40, 0.5, 0.0) + 0.01 * rng.standard_normal(8000)
              for _ in range(8)]
    waves = np.stack(tones + noise + clicks).astype(np.float32)
    recipe = load_recipe("default", ["features.n_mels=40"])
    extractor = SummaryFeatures.from_config(recipe.features, 16000)
    return recipe, extractor, waves, summarize(extractor, waves), np.repeat(np.arange(3), 8)


@pytest.mark.parametrize("name", CLASSICAL)
def test_every_classical_model_fits_and_predicts_with_the_right_shapes(name, three_sounds, tmp_path):
    import numpy as np

    from earmark.models.classical import ClassicalMember, fit_pipeline

    recipe, extractor, waves, x, y = three_sounds
    pipe = create_model(name, num_classes=4, random_state=0)  # class 3 never seen in training
    fit_pipeline(pipe, x, y)
    member = ClassicalMember(pipe, extractor, num_classes=4)
    probs = member.predict_proba(waves)
    # one scikit-learn Pipeline from waveforms to predict_proba, its fitted steps shared with ``pipe``
    assert [n for n, _ in member.model.steps] == ["features", *(n for n, _ in pipe.steps)]
    np.testing.assert_array_equal(member.model.predict_proba(waves), pipe.predict_proba(x))
    assert probs.shape == (24, 4) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert np.all(probs[:, 3] == 0) and (probs.argmax(1) == y).mean() >= 0.9
    assert member.predict_proba(waves[:0]).shape == (0, 4)
    member.save(tmp_path)
    loaded = ClassicalMember.load(tmp_path, recipe.model_copy(update={"model": recipe.model.model_copy(
        update={"name": name})}))
    np.testing.assert_array_equal(loaded.predict_proba(waves), probs)  # bit for bit


def test_earmark_models_lists_every_model_with_family_and_input():
    from typer.testing import CliRunner

    from earmark.cli import app

    out = CliRunner().invoke(app, ["models"])
    assert out.exit_code == 0, out.output
    lines = {line.split()[0]: line.split()[1:3] for line in out.stdout.splitlines() if line.strip()}
    assert sorted(lines) == list_models()
    for name, (family, kind) in lines.items():
        assert (family, kind) == (get_spec(name).family, get_spec(name).input)


def test_resnet34_has_dropout_02_before_a_new_head():
    net = create_model("resnet34", num_classes=4, in_chans=1, dropout=0.2)
    assert net.conv1.in_channels == 1 and net.fc.out_features == 4 and net.drop_rate == 0.2


def test_unknown_model_and_too_few_classes():
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        create_model("nope", 3)
    with pytest.raises(ConfigError, match="at least 2 classes"):
        create_model("cnn", 1)


def test_register_twice_is_refused():
    with pytest.raises(ValueError, match="twice"):
        register_model("cnn", family="cnn")(lambda num_classes: None)
