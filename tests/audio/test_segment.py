import numpy as np
import pytest

from earmark.audio.segment import cut, segment_starts, stream_segments


def test_three_second_segments_with_one_second_hop():
    sr = 10
    starts = segment_starts(10 * sr, 3 * sr, 1 * sr, tail="drop")
    assert starts.tolist() == [0, 10, 20, 30, 40, 50, 60, 70]


@pytest.mark.parametrize("tail, expected", [("drop", [0, 4]), ("align", [0, 4, 7]), ("pad", [0, 4, 8])])
def test_tail_policies(tail, expected):
    assert segment_starts(15, 8, 4, tail=tail).tolist() == expected


def test_tail_pad_respects_minimum():
    assert segment_starts(15, 8, 4, tail="pad", min_tail=8).tolist() == [0, 4]


@pytest.mark.parametrize("short, n", [("pad", 1), ("repeat", 1), ("drop", 0)])
def test_short_file_policies(short, n):
    x = np.arange(1, 4, dtype=np.float32)
    segs, starts = cut(x, 8, 4, short=short)
    assert len(segs) == n
    if short == "pad":
        assert segs[0].tolist() == [1, 2, 3, 0, 0, 0, 0, 0]
    if short == "repeat":
        assert segs[0].tolist() == [1, 2, 3, 1, 2, 3, 1, 2]


@pytest.mark.parametrize("n, block", [(1, 3), (7, 2), (100, 7), (100, 1000), (57, 8), (64, 16)])
@pytest.mark.parametrize("tail", ["align", "pad", "drop"])
@pytest.mark.parametrize("short", ["pad", "repeat", "drop"])
def test_streaming_gives_exactly_the_segments_of_cut(n, block, tail, short):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    segs, starts = cut(x, 16, 6, short=short, tail=tail, min_tail=2)
    blocks = [x[i: i + block] for i in range(0, n, block)]
    streamed = list(stream_segments(blocks, 16, 6, short=short, tail=tail, min_tail=2))
    assert [s for s, _ in streamed] == starts.tolist()
    for (_, seg), ref in zip(streamed, segs):
        np.testing.assert_array_equal(seg, ref)
