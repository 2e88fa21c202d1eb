"""Pretrained weights from a local file (written by the test itself) and freezing the backbone."""
from pathlib import Path

import pytest
import torch

from earmark.config import load_recipe
from earmark.errors import ConfigError
from earmark.models.net import build_net
from earmark.models.pretrained import adapt_channels, classifier_head, load_pretrained


@pytest.fixture(scope="module")
def rgb_resnet18() -> dict[str, torch.Tensor]:
    """An 'ImageNet-like' checkpoint: a 3-channel timm resnet18 with a 7-class head, random weights."""
    import timm

    torch.manual_seed(0)
    return {k: v.clone() for k, v in timm.create_model("resnet18", num_classes=7, in_chans=3).state_dict().items()}


def _net(extra: list[str] = ()):
    recipe = load_recipe("default", ["model.name=resnet18", *extra])
    return build_net(recipe, num_classes=4)


@pytest.mark.parametrize("fmt", ["torch-lightning", "safetensors"])
def test_weights_land_first_conv_summed_body_equal_head_new(rgb_resnet18, tmp_path: Path, fmt: str):
    if fmt == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "rgb.safetensors"
        save_file({f"module.{k}": v.contiguous() for k, v in rgb_resnet18.items()}, str(path))  # DDP prefix
    else:
        path = tmp_path / "rgb.ckpt"  # Lightning-style: nested under state_dict, prefixed by the module name
        torch.save({"epoch": 3, "state_dict": {f"model.{k}": v for k, v in rgb_resnet18.items()}}, path)
    net = _net()
    fresh_fc = net.backbone.fc.weight.detach().clone()
    report = load_pretrained(net.backbone, path)
    own = net.backbone.state_dict()
    torch.testing.assert_close(own["conv1.weight"], rgb_resnet18["conv1.weight"].sum(1, keepdim=True))
    assert own["conv1.weight"].shape == (64, 1, 7, 7)
    for key in ("layer1.0.conv1.weight", "layer4.1.bn2.running_var", "bn1.bias"):
        torch.testing.assert_close(own[key], rgb_resnet18[key])
    assert own["fc.weight"].shape == (4, 512)
    torch.testing.assert_close(own["fc.weight"], fresh_fc)  # the head keeps its new initialisation
    assert set(report.skipped) == {"fc.weight", "fc.bias"} and "classifier head" in report.skipped["fc.weight"]
    assert report.adapted == ["conv1.weight: (64, 3, 7, 7) -> (64, 1, 7, 7)"]
    assert report.missing == ["fc.bias", "fc.weight"] and not report.unused
    assert len(report.loaded) == len(rgb_resnet18) - 2
    assert report.prefix == ("module." if fmt == "safetensors" else "model.")


def test_three_channel_images_repeat_a_one_channel_kernel():
    w = torch.randn(8, 1, 3, 3)
    w3 = adapt_channels(w, 3)
    assert w3.shape == (8, 3, 3, 3)
    x = torch.randn(2, 1, 9, 9)
    torch.testing.assert_close(torch.nn.functional.conv2d(x.expand(-1, 3, -1, -1), w3),
                               torch.nn.functional.conv2d(x, w))  # same response to a repeated input
    torch.testing.assert_close(adapt_channels(torch.ones(2, 3, 1, 1), 1), torch.full((2, 1, 1, 1), 3.0))


def test_bad_pretrained_files_give_clear_errors(tmp_path: Path):
    net = _net()
    with pytest.raises(ConfigError, match="does not exist"):
        load_pretrained(net.backbone, tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="weights_only"):
        load_pretrained(net.backbone, tmp_path / "junk.pt")
    torch.save({"other.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="none of the 1 tensors"):
        load_pretrained(net.backbone, tmp_path / "other.pt")


def test_classifier_head_of_timm_and_own_networks():
    net = _net()
    assert classifier_head(net.backbone) is net.backbone.fc  # timm: get_classifier()
    cnn = build_net(load_recipe("default", ["model.name=cnn"]), 3)
    assert classifier_head(cnn.backbone) is cnn.backbone.head


def _fit_frozen(unfreeze_after: int | None, epochs: int):
    """A tiny Lightning fit of the small CNN with the backbone frozen; returns (before, after) parameters."""
    import lightning.pytorch as pl

    from earmark.training.finetune import BackboneFreezer
    from earmark.training.module import ClassifierModule

    recipe = load_recipe("default", ["model.name=cnn", "augment.mixup.p=0", "augment.specaugment.p=0",
                                     "augment.gain.p=0", "augment.shift.p=0", "train.lr=0.01",
                                     "model.freeze_backbone=true"])
    torch.manual_seed(0)
    net = build_net(recipe, 2)
    before = {k: v.detach().clone() for k, v in net.named_parameters()}
    waves = torch.randn(8, 4000) * 0.1
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(waves, torch.arange(8) % 2), batch_size=4)
    module = ClassifierModule(net, recipe, 2, len(loader))
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[BackboneFreezer(unfreeze_after)])
    trainer.fit(module, loader)
    after = dict(net.named_parameters())
    assert all(p.requires_grad for p in after.values())  # handed back as an ordinary network
    return before, {k: v.detach() for k, v in after.items()}


def test_a_frozen_backbone_stays_unchanged_and_the_head_learns():
    before, after = _fit_frozen(None, epochs=1)
    body = [k for k in before if not k.startswith("backbone.head.")]
    assert body and all(torch.equal(before[k], after[k]) for k in body)
    assert not torch.equal(before["backbone.head.weight"], after["backbone.head.weight"])


def test_the_backbone_unfreezes_after_n_epochs():
    before, after = _fit_frozen(1, epochs=2)
    changed = [k for k in before if not k.startswith("backbone.head.") and not torch.equal(before[k], after[k])]
    assert len(changed) >= 0.9 * sum(not k.startswith("backbone.head.") for k in before)
