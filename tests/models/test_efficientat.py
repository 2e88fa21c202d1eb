"""The EfficientAT family: the released mn04_as checkpoint loads strictly into our own network."""
import pytest
import torch

from earmark.models.efficientat import WIDTHS, build_mn
from earmark.models.registry import create_model, get_spec, list_models

from ..conftest import shared_weights


def test_the_family_is_registered_with_every_width():
    assert list_models(family="efficientat") == sorted(WIDTHS)
    assert WIDTHS["mn04"] == 0.4 and WIDTHS["mn40"] == 4.0
    assert all(get_spec(n).input == "spectrogram" for n in WIDTHS)


def test_the_released_mn04_checkpoint_loads_strictly():
    net = build_mn(width_mult=0.4, num_classes=527)
    state = torch.load(shared_weights("mn04_as_mAP_432.pt"), map_location="cpu", weights_only=True)
    result = net.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert sum(p.numel() for p in net.parameters()) == 983_599  # as the weights README states
    assert net.embed_dim == 384


def test_forward_shapes_embedding_and_the_two_layouts_agree():
    torch.manual_seed(0)
    upstream = build_mn(0.4, num_classes=527).eval()
    ours = create_model("mn04", num_classes=527).eval()
    ours.load_state_dict(upstream.state_dict())
    x = torch.randn(2, 1, 128, 100)  # (batch, 1, mels, frames), upstream's layout
    with torch.no_grad():
        logits = upstream(x)
        emb = upstream.forward_features(x)
        torch.testing.assert_close(ours(x.transpose(2, 3)), logits)  # the registry's (batch, 1, frames, mels)
        torch.testing.assert_close(ours.forward_features(x.transpose(2, 3)), emb)
    assert logits.shape == (2, 527) and emb.shape == (2, upstream.embed_dim)
    # the embedding is what the classifier pools: its MLP applied to it gives the logits
    head = upstream.classifier
    with torch.no_grad():
        torch.testing.assert_close(head[5](head[3](head[2](emb))), logits, rtol=1e-5, atol=1e-5)


def test_a_new_head_replaces_only_the_last_linear_layer():
    net = create_model("mn04", num_classes=5)
    assert net.get_classifier() is net.classifier[5]
    assert net.get_classifier().out_features == 5 and net.classifier[2].in_features == net.embed_dim
    wide = build_mn(width_mult=1.0, num_classes=3)
    assert wide.embed_dim == 960 and wide.num_blocks == 17


def test_width_zero_is_refused():
    with pytest.raises(ValueError, match="width_mult"):
        build_mn(width_mult=0.0)
