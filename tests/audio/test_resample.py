"""The in-graph resampler (issue 17, item 9): close to soxr, band-limited, and exported with the model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soxr
import torch

from earmark.audio.resample import Resample

PAIRS = [(8000, 16000), (44100, 16000), (48000, 22050), (16000, 8000), (22050, 32000), (11025, 16000)]


def band_limited_noise(rate: int, seconds: float, f_max: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    spec = np.fft.rfft(rng.standard_normal(n))
    spec[np.fft.rfftfreq(n, 1 / rate) > f_max] = 0
    x = np.fft.irfft(spec, n)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def snr_db(ref: np.ndarray, got: np.ndarray, edge: int = 400) -> float:
    ref, got = ref[edge:-edge], got[edge:-edge]
    return float(10 * np.log10(np.sum(ref ** 2) / np.sum((ref - got) ** 2)))


@pytest.mark.parametrize("orig, new", PAIRS)
def test_agrees_with_soxr_on_band_limited_audio(orig: int, new: int):
    # Content up to 85% of the lower Nyquist frequency: the two resamplers agree to better than 70 dB
    # (measured: 77 to 130 dB).
    x = band_limited_noise(orig, 2.0, 0.85 * min(orig, new) / 2)
    ref = soxr.resample(x, orig, new, quality="HQ")
    got = Resample(orig, new)(torch.from_numpy(x)[None])[0].numpy()
    assert got.shape == ref.shape  # ceil(samples * new / orig), as soxr
    assert snr_db(ref, got) > 70
    assert np.abs(ref - got)[400:-400].max() < 1e-4


def test_removes_what_is_above_the_new_nyquist_frequency():
    t = np.arange(44100) / 44100
    for freq, most in ((7000, None), (8400, -100.0), (9000, -100.0), (12000, -100.0)):
        x = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
        y = Resample(44100, 16000)(torch.from_numpy(x)[None])[0].numpy()[500:-500]
        level = 20 * np.log10(np.sqrt(np.mean(y ** 2)) / (0.5 / np.sqrt(2)))
        if most is None:
            assert abs(level) < 0.2  # 7 kHz passes (87.5% of the new Nyquist frequency)
        else:
            assert level < most  # aliases are removed, not folded down


def test_same_rate_is_identity_and_bad_rates_are_refused():
    x = torch.randn(2, 100)
    assert torch.equal(Resample(16000, 16000)(x), x)
    with pytest.raises(ValueError):
        Resample(0, 16000)


def test_export_with_input_rate_matches_soxr_then_the_run(trained_run: Path, tmp_path: Path):
    from earmark.audio.io import resample
    from earmark.inference.onnx import OnnxModel, export_onnx

    from ..conftest import tone

    path = export_onnx(trained_run, tmp_path / "m8k.onnx", input_rate=8000)
    model = OnnxModel(path)
    assert model.input_rate == 8000 and model.sample_rate == 16000
    assert model.metadata["earmark.input_rate"] == "8000"
    plain = OnnxModel(export_onnx(trained_run, tmp_path / "m.onnx"))
    rng = np.random.default_rng(1)
    clip8k = (tone(440, 1.5, 8000, 0.3) + 0.05 * rng.standard_normal(12000)).astype(np.float32)
    ref = plain.run(resample(clip8k, 8000, 16000))[0]  # what a user must do otherwise: soxr, then the run
    got = model.run(clip8k)[0]
    assert np.abs(got - ref).max() < 0.01  # measured 0.0013; a linear interpolation: 0.21
    default = export_onnx(trained_run, input_rate=8000)
    assert default.name == "model-8000hz.onnx"  # the run's own model.onnx stays at the run's rate
    default.unlink()
