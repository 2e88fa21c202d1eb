"""Summary features of the classical baselines: each descriptor measures what it says."""
import numpy as np
import pytest
import torch

from earmark.config import FeatureConfig
from earmark.features.stats import SummaryFeatures, deltas, summarize

SR = 16000


@pytest.fixture(scope="module")
def extractor() -> SummaryFeatures:
    return SummaryFeatures(SR, n_mels=40, n_mfcc=20).eval()


def _features(extractor: SummaryFeatures, waves: list[np.ndarray]) -> list[dict[str, float]]:
    x = summarize(extractor, np.stack(waves))
    return [dict(zip(extractor.feature_names, row)) for row in x]


def test_layout_and_batching(extractor):
    assert extractor.n_features == 2 * (20 + 20 + 40 + 40 + 3 + 7 + 1) == len(extractor.feature_names)
    rng = np.random.default_rng(0)
    waves = (0.1 * rng.standard_normal((5, SR))).astype(np.float32)
    batched = summarize(extractor, waves, batch_size=2)
    single = np.concatenate([summarize(extractor, waves[i: i + 1]) for i in range(5)])
    assert batched.shape == (5, extractor.n_features) and batched.dtype == np.float64
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-4)
    cfg = FeatureConfig(n_mels=64, n_mfcc=13)
    assert SummaryFeatures.from_config(cfg, SR).n_features == 2 * (13 + 13 + 64 + 64 + 11)


def test_spectral_descriptors_of_a_tone_and_of_noise(extractor):
    t = np.arange(SR) / SR
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    noise = (0.1 * np.random.default_rng(1).standard_normal(SR)).astype(np.float32)
    ft, fn = _features(extractor, [tone, noise])
    bin_khz = SR / 1024 / 1000
    assert ft["centroid_khz_mean"] == pytest.approx(1.0, abs=3 * bin_khz)   # 1 kHz tone
    assert ft["rolloff_khz_mean"] == pytest.approx(1.0, abs=3 * bin_khz)    # window leakage: +2 bins
    assert ft["bandwidth_khz_mean"] < 0.6 < fn["bandwidth_khz_mean"]
    assert fn["centroid_khz_mean"] == pytest.approx(4.0, abs=0.15)          # white noise: half of Nyquist
    assert fn["rolloff_khz_mean"] == pytest.approx(0.85 * 8.0, abs=0.15)
    assert ft["zcr_mean"] == pytest.approx(2 * 1000 / SR, abs=0.003)        # two crossings per period
    assert fn["zcr_mean"] == pytest.approx(0.5, abs=0.03)
    # a tone is one peak in its band (high contrast); noise is flat-ish everywhere
    assert ft["contrast3_mean"] > fn["contrast3_mean"] + 20


def test_centroid_and_zcr_agree_with_librosa(extractor):
    librosa = pytest.importorskip("librosa")
    rng = np.random.default_rng(2)
    t = np.arange(SR) / SR
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 2500 * t)
            + 0.01 * rng.standard_normal(SR)).astype(np.float32)
    (f,) = _features(extractor, [wave])
    kw = dict(sr=SR, n_fft=1024, hop_length=160, win_length=400, window="hamming", center=False)
    centroid = librosa.feature.spectral_centroid(y=wave, **kw).mean() / 1000
    zcr = librosa.feature.zero_crossing_rate(wave, frame_length=400, hop_length=160, center=False).mean()
    assert f["centroid_khz_mean"] == pytest.approx(centroid, rel=0.02)
    assert f["zcr_mean"] == pytest.approx(zcr, rel=0.05)


def test_deltas_of_a_ramp_are_its_slope():
    x = torch.arange(10.0)[None, :, None].repeat(2, 1, 3) * 0.5  # (B, T, F), slope 0.5 per frame
    d = deltas(x)
    torch.testing.assert_close(d[:, 2:-2], torch.full((2, 6, 3), 0.5))
    assert d.shape == x.shape and float(d[0, 0, 0]) < 0.5                # edges repeat the end frames
    with pytest.raises(ValueError, match="width"):
        deltas(x, 0)
