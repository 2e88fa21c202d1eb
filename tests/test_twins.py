"""The torch twins of the signal semantics (used by the exported graph) equal their numpy originals."""
import numpy as np
import pytest
import torch

from earmark.audio.segment import SegmentCutter, SegmentSpec, cut
from earmark.config import SegmentConfig
from earmark.ensemble import vote, vote_torch
from earmark.evaluation.aggregate import aggregate_track, aggregate_track_torch

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("short", ["pad", "repeat", "drop"])
@pytest.mark.parametrize("tail", ["align", "pad", "drop"])
@pytest.mark.parametrize("n_samples", [7, 40, 41, 57, 100, 103])
def test_segmenting_numpy_and_torch_agree(short: str, tail: str, n_samples: int):
    spec = SegmentSpec(length=40, hop=15, short=short, tail=tail, min_tail=4)  # type: ignore[arg-type]
    wave = RNG.standard_normal(n_samples).astype(np.float32)
    segs, _ = cut(wave, spec.length, spec.hop, spec.short, spec.tail, spec.min_tail)
    got = SegmentCutter.from_spec(spec)(torch.from_numpy(wave)[None])[0].numpy()
    if short == "drop" and n_samples < spec.length:  # a graph must answer: it pads where the Predictor drops
        assert segs.shape[0] == 0 and got.shape == (1, spec.length)
        return
    np.testing.assert_array_equal(got, segs)


def test_segment_spec_is_made_from_seconds_in_one_place():
    cfg = SegmentConfig(length_s=1.0, hop_s=0.5, min_tail_s=0.25)
    spec = SegmentSpec.from_config(cfg, 22050)
    assert (spec.length, spec.hop, spec.min_tail, spec.short, spec.tail) == (22050, 11025, 5512, cfg.short, cfg.tail)


@pytest.mark.parametrize("voting", ["soft", "hard"])
@pytest.mark.parametrize("weights", [None, [1.0, 2.0, 0.5]])
def test_voting_numpy_and_torch_agree(voting: str, weights: list[float] | None):
    probs = RNG.dirichlet(np.ones(4), size=(3, 50))  # (members, n, classes)
    expected = vote(probs, voting, weights)  # type: ignore[arg-type]
    w = np.ones(3) if weights is None else np.asarray(weights)
    got = vote_torch(torch.from_numpy(probs), voting, torch.from_numpy(w / w.sum())).numpy()  # type: ignore[arg-type]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert (got.argmax(1) == expected.argmax(1)).all()


@pytest.mark.parametrize("method", ["mean", "sum", "vote"])
def test_aggregation_numpy_and_torch_agree(method: str):
    seg_probs = RNG.dirichlet(np.ones(5), size=(4, 9)).astype(np.float32)  # (batch, segments, classes)
    expected = np.stack([aggregate_track(p, method) for p in seg_probs])  # type: ignore[arg-type]
    got = aggregate_track_torch(torch.from_numpy(seg_probs), method).numpy()  # type: ignore[arg-type]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert (got.argmax(1) == expected.argmax(1)).all()


@pytest.mark.parametrize("n,max_shift", [(1, 0.0), (3, 0.2), (4, 0.25)])
def test_test_time_shifts_numpy_and_torch_agree(n: int, max_shift: float):
    from earmark.ensemble import tta_shifts, with_tta, with_tta_torch

    segs = RNG.standard_normal((6, 32)).astype(np.float32)
    weights = RNG.standard_normal((32, 3)).astype(np.float32)
    expected = with_tta(lambda w: w @ weights, segs, n, max_shift)
    shifts = [int(round(s * segs.shape[1])) for s in tta_shifts(n, max_shift)]
    got = with_tta_torch(lambda w: w @ torch.from_numpy(weights), torch.from_numpy(segs), shifts).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
