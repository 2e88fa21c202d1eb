"""The filter bank against an independent numpy computation of the same maths, and against librosa."""
import numpy as np
import pytest
import torch

from earmark.features.fbank import MFCC, LogMelFilterBank, mel_filterbank, num_frames

TOL = 1e-4  # absolute, on natural-log energies (float32 vs float64 reference)


def reference_logmel(x: np.ndarray, sr=16000, n_mels=40, n_fft=1024, win=400, hop=160, f_min=0.0, f_max=8000.0,
                     pre=0.97, floor=1e-6) -> np.ndarray:
    """Plain numpy, float64, written from the textbook definitions."""
    x = x.astype(np.float64)
    y = np.append(x[0], x[1:] - pre * x[:-1])
    n = 1 if len(y) <= win else 1 + int(np.ceil((len(y) - win) / hop))
    y = np.pad(y, (0, (n - 1) * hop + win - len(y)))
    frames = np.stack([y[i * hop: i * hop + win] for i in range(n)]) * np.hamming(win)
    power = np.abs(np.fft.rfft(frames, n_fft)) ** 2 / n_fft
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    imel = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    edges = imel(np.linspace(mel(f_min), mel(f_max), n_mels + 2))
    freqs = np.arange(n_fft // 2 + 1) * sr / n_fft
    bank = np.zeros((n_mels, len(freqs)))
    for m in range(n_mels):
        lo, c, hi = edges[m: m + 3]
        bank[m] = np.clip(np.minimum((freqs - lo) / (c - lo), (hi - freqs) / (hi - c)), 0, None)
    return np.log(np.maximum(power @ bank.T, floor))


@pytest.fixture(scope="module")
def speechlike() -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(48000) / 16000
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.standard_normal(48000)
            ).astype(np.float32)


def test_three_seconds_give_299_by_40(speechlike):
    out = LogMelFilterBank()(torch.from_numpy(speechlike)[None])
    assert out.shape == (1, 1, 299, 40)
    assert num_frames(48000, 400, 160) == 299


def test_matches_numpy_reference(speechlike):
    ours = LogMelFilterBank()(torch.from_numpy(speechlike)[None])[0, 0].numpy()
    np.testing.assert_allclose(ours, reference_logmel(speechlike), atol=TOL)


@pytest.mark.parametrize("sr, n_mels, hop_ms, f_max", [(22050, 128, 10.0, None), (8000, 64, 5.0, 4000.0),
                                                       (16000, 64, 20.0, 7600.0)])
def test_matches_reference_for_other_settings(sr, n_mels, hop_ms, f_max):
    x = np.random.default_rng(1).standard_normal(sr).astype(np.float32) * 0.1
    fb = LogMelFilterBank(sample_rate=sr, n_mels=n_mels, n_fft=2048, hop_ms=hop_ms, f_max=f_max)
    ours = fb(torch.from_numpy(x)[None])[0, 0].numpy()
    ref = reference_logmel(x, sr, n_mels, 2048, int(round(0.025 * sr)), int(round(hop_ms * sr / 1000)),
                           f_max=f_max or sr / 2)
    np.testing.assert_allclose(ours, ref, atol=TOL)


def test_mel_bank_equals_librosa_htk():
    librosa = pytest.importorskip("librosa")
    ref = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=40, fmin=0, fmax=8000, htk=True, norm=None)
    np.testing.assert_allclose(mel_filterbank(16000, 1024, 40, 0, 8000).T, ref, atol=1e-5)


def test_matmul_fft_equals_rfft_and_batches_equal_singles(speechlike):
    fb = LogMelFilterBank(n_mels=64)
    batch = torch.from_numpy(np.stack([speechlike, speechlike[::-1].copy(), speechlike * 0.1]))
    fast = fb(batch)
    fb.set_fft("matmul")
    slow = fb(batch)
    torch.testing.assert_close(fast, slow, atol=TOL, rtol=0)
    fb.set_fft("rfft")
    for i in range(3):
        torch.testing.assert_close(fb(batch[i: i + 1]), fast[i: i + 1], atol=1e-5, rtol=0)


def test_mfcc_is_orthonormal_dct_of_logmel(speechlike):
    from scipy.fft import dct

    wave = torch.from_numpy(speechlike)[None]
    ours = MFCC(n_mfcc=13)(wave)[0, 0].numpy()
    ref = dct(reference_logmel(speechlike), type=2, norm="ortho", axis=1)[:, :13]
    np.testing.assert_allclose(ours, ref, atol=1e-3)


def test_short_input_gives_one_padded_frame():
    out = LogMelFilterBank()(torch.zeros(2, 100) + 0.01)
    assert out.shape == (2, 1, 1, 40)


@pytest.mark.parametrize("kwargs, message", [
    ({"n_mels": 0}, "n_mels"), ({"f_max": 9000.0}, "f_max"), ({"preemphasis": 1.5}, "pre-emphasis"),
    ({"n_fft": 256}, "n_fft"), ({"window": "triangle"}, "window"), ({"n_mels": 400, "n_fft": 512}, "between FFT bins"),
])
def test_invalid_arguments_raise_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LogMelFilterBank(**kwargs)


def test_tables_are_buffers_that_follow_the_module():
    fb = LogMelFilterBank()
    names = {n for n, _ in fb.named_buffers()}
    assert {"spectrogram.window", "spectrogram.dft_basis", "mel.fb"} <= names
    assert not fb.state_dict()  # constant tables are rebuilt, not saved
    fb = fb.to(torch.float64)
    assert fb.mel.fb.dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU on this machine")
def test_runs_on_gpu(speechlike):  # pragma: no cover - exercised where a GPU exists
    fb = LogMelFilterBank()
    x = torch.from_numpy(speechlike)[None]
    torch.testing.assert_close(fb.cuda()(x.cuda()).cpu(), LogMelFilterBank()(x), atol=1e-3, rtol=0)


# ------------------------------------------------------------------------------------ loudness (issue 17)


@pytest.fixture(scope="module")
def quiet_and_padded(speechlike) -> torch.Tensor:
    """A real-level segment, a quiet one (-30 dB) and one zero-padded after 0.4 s, as a batch of 1 s rows."""
    x = torch.from_numpy(speechlike[:16000]).repeat(3, 1)
    x[1] *= 10 ** (-30 / 20)
    x[2, 6400:] = 0.0
    return x


def test_relative_floor_matches_reference_with_the_segment_maximum_as_floor(speechlike):
    x = speechlike[:16000] * np.float32(1e-3)  # quiet: many cells under the fixed 1e-6 floor
    energy = np.exp(reference_logmel(x, floor=1e-300))
    ref = np.log(np.maximum(energy, energy.max() * 1e-8))
    ours = LogMelFilterBank(log_floor_db=80.0)(torch.from_numpy(x)[None])[0, 0].numpy()
    np.testing.assert_allclose(ours, ref, atol=TOL)
    assert (LogMelFilterBank()(torch.from_numpy(x)[None]) == np.log(1e-6)).float().mean() > 0.3  # the old floor clips


@pytest.mark.parametrize("gain_db", [-20.0, -30.0, -40.0, 12.0])
def test_relative_floor_turns_a_gain_into_a_constant_shift(quiet_and_padded, gain_db):
    fb = LogMelFilterBank(n_mels=64, hop_ms=20, log_floor_db=80.0)
    g = 10 ** (gain_db / 20)
    diff = fb(quiet_and_padded * g) - fb(quiet_and_padded)
    np.testing.assert_allclose(diff.numpy(), 2 * np.log(g), atol=1e-3)  # every cell, padded frames included


@pytest.mark.parametrize("norm", ["mean", "max"])
@pytest.mark.parametrize("gain_db", [-20.0, -40.0, -60.0, 20.0])
def test_segment_normalised_features_do_not_depend_on_the_level(quiet_and_padded, gain_db, norm):
    for kind in (LogMelFilterBank, MFCC):
        fb = kind(n_mels=64, hop_ms=20, log_floor_db=80.0, segment_norm=norm)
        loud, quiet = fb(quiet_and_padded), fb(quiet_and_padded * 10 ** (gain_db / 20))
        np.testing.assert_allclose(quiet.numpy(), loud.numpy(), atol=1e-3)
    out = LogMelFilterBank(log_floor_db=80.0, segment_norm=norm)(quiet_and_padded)
    reduce = out.mean if norm == "mean" else out.amax
    np.testing.assert_allclose(reduce(dim=(1, 2, 3)).numpy(), 0.0, atol=1e-4)
    if norm == "max":  # the loudest cell is 0, the floor 80 dB below it (reached in the zero-padded row)
        lowest = out.amin(dim=(1, 2, 3)).numpy()
        assert (lowest >= -8 * np.log(10) - 1e-3).all() and abs(lowest[2] + 8 * np.log(10)) < 1e-3


def test_fixed_floor_features_change_with_the_level(quiet_and_padded):
    """Why the options exist: with the fixed floor, a -30 dB input is not a shifted copy (cells hit the floor)."""
    fb = LogMelFilterBank(n_mels=64, hop_ms=20, segment_norm="mean")
    diff = (fb(quiet_and_padded * 10 ** (-30 / 20)) - fb(quiet_and_padded)).abs()
    assert diff.max() > 1.0


def test_silent_segment_stays_finite():
    for norm in ("mean", "max"):
        out = LogMelFilterBank(log_floor_db=80.0, segment_norm=norm)(torch.zeros(2, 4000))
        assert torch.isfinite(out).all() and out.abs().max() == 0


def test_loudness_options_give_the_same_numbers_with_matmul_fft(quiet_and_padded):
    fb = LogMelFilterBank(log_floor_db=80.0, segment_norm="max")
    a = fb(quiet_and_padded)
    fb.set_fft("matmul")
    np.testing.assert_allclose(fb(quiet_and_padded).numpy(), a.numpy(), atol=1e-3)


def test_invalid_loudness_options_are_refused():
    with pytest.raises(ValueError, match="log_floor_db"):
        LogMelFilterBank(log_floor_db=0.0)
    with pytest.raises(ValueError, match="segment_norm"):
        LogMelFilterBank(segment_norm="median")  # type: ignore[arg-type]
