"""The EfficientAT front-end (the project's filter bank, configured) against independent numpy maths, and
the released mn04 on the upstream example clip."""
import csv

import numpy as np
import pytest
import torch

from earmark.features.fbank import LogMelFilterBank, kaldi_mel_filterbank
from earmark.models.efficientat import build_mn, efficientat_features
from earmark.models.net import Standardize, build_frontend

from ..conftest import shared_weights


def kaldi_bank(sr: int, n_fft: int, n_mels: int, f_lo: float, f_hi: float) -> np.ndarray:
    """Kaldi's mel banks written out per filter (1127 ln(1 + f/700), triangles in mel), (n_mels, n_fft//2 + 1)."""
    def mel(f):
        return 1127.0 * np.log(1.0 + f / 700.0)

    step = (mel(f_hi) - mel(f_lo)) / (n_mels + 1)
    bank = np.zeros((n_mels, n_fft // 2 + 1))
    for m in range(n_mels):
        left, centre, right = (mel(f_lo) + (m + i) * step for i in range(3))
        for k in range(n_fft // 2):  # the Nyquist bin stays 0
            b = mel(k * sr / n_fft)
            if left < b < right:
                bank[m, k] = (b - left) / (centre - left) if b <= centre else (right - b) / (right - centre)
    return bank


def reference(x: np.ndarray, sr=32000, n_fft=1024, win=800, hop=320, n_mels=128, f_hi=15000.0) -> np.ndarray:
    """Upstream's maths in float64 numpy: conv pre-emphasis, centred reflect-padded STFT with the window in the
    middle of the FFT frame, |X|^2, Kaldi bank, log(x + 1e-5), (x + 4.5) / 5. Shape (frames, mels)."""
    x = x.astype(np.float64)
    y = x[1:] - 0.97 * x[:-1]
    y = np.pad(y, n_fft // 2, mode="reflect")
    window = np.zeros(n_fft)
    window[(n_fft - win) // 2: (n_fft - win) // 2 + win] = np.hanning(win)  # symmetric Hann, centred
    n = 1 + (len(y) - n_fft) // hop
    frames = np.stack([y[i * hop: i * hop + n_fft] for i in range(n)]) * window
    power = np.abs(np.fft.rfft(frames)) ** 2
    return (np.log(power @ kaldi_bank(sr, n_fft, n_mels, 0.0, f_hi).T + 1e-5) + 4.5) / 5.0


def efficientat_input(wave: np.ndarray, fft: str = "rfft") -> torch.Tensor:
    cfg, sr = efficientat_features()
    frontend = build_frontend(cfg, sr)
    frontend.set_fft(fft)
    norm = Standardize(cfg.n_mels, cfg.normalize, cfg.norm_offset, cfg.norm_scale)
    with torch.no_grad():
        return norm(frontend(torch.from_numpy(wave)[None]))


def test_the_kaldi_bank_matches_its_definition():
    ours = kaldi_mel_filterbank(32000, 1024, 128, 0.0, 15000.0).T
    np.testing.assert_allclose(ours, kaldi_bank(32000, 1024, 128, 0.0, 15000.0), atol=1e-6)
    assert ours.shape == (128, 513) and not ours[:, -1].any()
    assert (ours[:, : 480].max(axis=0) > 0).sum() > 400  # covers the band below 15 kHz


@pytest.mark.parametrize("fft", ["rfft", "matmul"])
@pytest.mark.parametrize("seconds", [1.0, 2.345])
def test_the_front_end_equals_the_numpy_reference(fft, seconds):
    rng = np.random.default_rng(3)
    n = int(seconds * 32000)
    t = np.arange(n) / 32000
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 2 * t)) + 0.05 * rng.standard_normal(n)
            ).astype(np.float32)
    ours = efficientat_input(wave, fft)[0, 0].numpy()
    ref = reference(wave)
    assert ours.shape == ref.shape == (1 + (n - 1) // 320, 128)
    # (log + 4.5) / 5 in float32 vs float64: 5e-5 here is 2.5e-4 relative energy (narrow low bands, weak bins)
    np.testing.assert_allclose(ours, ref, atol=5e-5)
    cfg, sr = efficientat_features()
    assert sr == 32000 and LogMelFilterBank(sample_rate=sr, **_fbank_args(cfg)).num_frames(n) == ours.shape[0]


def _fbank_args(cfg):
    keys = ("n_mels", "n_fft", "win_ms", "hop_ms", "f_min", "f_max", "preemphasis", "window", "preemphasis_mode",
            "center", "power_norm", "mel_filters", "log_offset")
    return {k: getattr(cfg, k) for k in keys}


def test_ten_seconds_give_1000_frames_and_defaults_are_unchanged():
    cfg, _ = efficientat_features()
    assert LogMelFilterBank(sample_rate=32000, **_fbank_args(cfg)).num_frames(320000) == 1000
    default = LogMelFilterBank()
    assert default.spectrogram.center is False and default.spectrogram.power_norm is True
    assert default.preemphasis.mode == "keep_first" and default.log_offset is None


def test_the_log_offset_adds_instead_of_flooring():
    silent = torch.zeros(1, 16000)
    floor = LogMelFilterBank()(silent)
    offset = LogMelFilterBank(log_offset=1e-5)(silent)
    torch.testing.assert_close(floor, torch.full_like(floor, float(np.log(1e-6))))
    torch.testing.assert_close(offset, torch.full_like(offset, float(np.log(1e-5))))
    with pytest.raises(ValueError, match="log_offset"):
        LogMelFilterBank(log_offset=0.0)


def test_the_released_mn04_hears_a_train_in_the_metro_clip():
    from earmark.audio.io import load_audio

    wave = load_audio(shared_weights("metro_station-paris.wav"), 32000)
    with open(shared_weights("audioset_class_labels_indices.csv"), newline="") as fh:
        names = [row["display_name"] for row in csv.DictReader(fh)]
    net = build_mn(width_mult=0.4, num_classes=527)
    net.load_state_dict(torch.load(shared_weights("mn04_as_mAP_432.pt"), weights_only=True))
    net.eval()
    with torch.no_grad():
        scores = torch.sigmoid(net(efficientat_input(wave).transpose(2, 3)))[0]  # build_mn: mels first
    top = [names[i] for i in scores.argsort(descending=True)[:5].tolist()]
    rail = {"Train", "Rail transport", "Railroad car, train wagon", "Subway, metro, underground"}
    assert rail & set(top), top
    assert scores[names.index("Train")] > 0.4  # the README's independent re-implementation: 0.73


def test_fixed_normalisation_is_not_refitted_and_the_settings_load_from_a_recipe():
    from earmark.config import load_recipe

    norm = Standardize(128, "fixed", 4.5, 5.0)
    norm.fit(torch.randn(4, 1, 10, 128) * 7 + 3)
    torch.testing.assert_close(norm(torch.full((1, 1, 2, 128), -4.5)), torch.zeros(1, 1, 2, 128))
    torch.testing.assert_close(norm(torch.zeros(1, 1, 1, 128)), torch.full((1, 1, 1, 128), 0.9))
    recipe = load_recipe("default", ["features.normalize=fixed", "features.norm_offset=4.5", "features.center=true",
                                     "features.mel_filters=kaldi", "features.log_offset=1e-5"])
    assert recipe.features.center and recipe.features.mel_filters == "kaldi" and recipe.features.log_offset == 1e-5
