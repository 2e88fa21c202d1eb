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
