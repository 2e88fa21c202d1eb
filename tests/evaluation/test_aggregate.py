import numpy as np
import pytest

from earmark.ensemble import tta_shifts, vote
from earmark.evaluation.aggregate import aggregate_by_track, aggregate_track
from earmark.evaluation.metrics import classification_scores


def test_mean_and_vote_can_disagree():
    p = np.array([[0.51, 0.49], [0.51, 0.49], [0.0, 1.0]])
    assert aggregate_track(p, "mean").argmax() == 1   # one confident segment wins the mean
    assert aggregate_track(p, "vote").argmax() == 0   # two segments out-vote it
    np.testing.assert_allclose(aggregate_track(p, "mean"), p.mean(0))
    np.testing.assert_allclose(aggregate_track(p, "sum"), p.mean(0))


def test_aggregate_by_track_keeps_order():
    probs = np.array([[1, 0], [0, 1], [0, 1], [1, 0.0]])
    tracks, out = aggregate_by_track(probs, np.array([7, 3, 3, 7]))
    assert tracks.tolist() == [7, 3]
    np.testing.assert_allclose(out, [[1, 0], [0, 1]])


def test_soft_and_hard_voting_with_weights():
    members = np.array([[[0.6, 0.4]], [[0.6, 0.4]], [[0.0, 1.0]]])
    assert vote(members, "soft").argmax() == 1
    assert vote(members, "hard").argmax() == 0
    assert vote(members, "hard", weights=[1, 1, 3]).argmax() == 1
    with pytest.raises(ValueError, match="weights"):
        vote(members, "soft", weights=[1, 1])


def test_tta_shifts():
    assert tta_shifts(1, 0.1) == [0.0]
    s = tta_shifts(4, 0.1)
    assert len(s) == 4 and s[0] == 0 and max(abs(x) for x in s) <= 0.1 and len(set(s)) == 4


def test_metrics():
    m = classification_scores(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), ["a", "b", "c"])
    assert m["accuracy"] == 0.75
    assert m["per_class"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)  # classes absent from the truth are left out
