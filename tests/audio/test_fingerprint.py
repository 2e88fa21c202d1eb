"""Fingerprints: the same recording after gain, shift and MP3 re-encoding matches; other sounds do not."""
import numpy as np
import pytest
import soundfile as sf

from earmark.audio.fingerprint import FRAME_SECONDS, NEAR_DUPLICATE_BER, compare, fingerprint
from earmark.audio.io import load_audio
from earmark.demo import synth

SR = 16000


def sound(label: str, seed: int, seconds: float = 3.0) -> np.ndarray:
    return synth(label, seconds, SR, np.random.default_rng(seed))


def test_gain_changes_no_bit():
    x = sound("knock", 0)
    a, b = fingerprint(x, SR), fingerprint(0.25 * x, SR)
    m = compare(a, b)
    assert m.offset == 0 and m.ber < 0.01 and m.is_duplicate
    assert m.common == a.n_valid > 300  # 3 s of sound, 8 ms frames


@pytest.mark.parametrize("shift_s", [0.004, 0.3, 1.0])
def test_shifted_copies_are_found_at_their_offset(shift_s):
    x = sound("chirp", 1)
    m = compare(fingerprint(x, SR), fingerprint(x[int(shift_s * SR):], SR))
    assert m.is_duplicate and m.ber < 0.15
    assert abs(m.offset_s - shift_s) <= FRAME_SECONDS  # b's frame k sits at a's k + offset


def test_mp3_reencoding_at_another_rate_with_less_gain_still_matches(tmp_path):
    x = sound("tone", 2)
    sf.write(str(tmp_path / "a.mp3"), 0.5 * x[800:], SR)  # 50 ms later, -6 dB, lossy
    y = load_audio(tmp_path / "a.mp3", 22050)
    m = compare(fingerprint(x, SR), fingerprint(y, 22050))
    assert m.is_duplicate and m.ber < NEAR_DUPLICATE_BER
    assert abs(m.offset_s - 0.05) < 0.03  # mp3 adds its own delay of a few ms


def test_different_recordings_do_not_match():
    bers = []
    for label in ("tone", "chirp", "knock", "hiss", "beep"):  # same class, other random draw
        m = compare(fingerprint(sound(label, 10), SR), fingerprint(sound(label, 11), SR))
        assert not m.is_duplicate
        bers.append(m.ber)
    assert 0.3 < float(np.median(bers)) < 0.6


def test_silence_and_tiny_files_give_no_evidence():
    silent = fingerprint(np.zeros(SR, np.float32), SR)
    assert silent.n_valid == 0
    assert compare(silent, silent).ber == 1.0 and not compare(silent, silent).is_duplicate
    tiny = fingerprint(sound("beep", 3, 0.06), SR)  # 60 ms: too short to tell a copy from another take
    assert not compare(tiny, tiny).is_duplicate
