import numpy as np
import pytest
import soundfile as sf

from earmark.audio.io import audio_info, ffmpeg_available, load_audio, stream_audio
from earmark.errors import AudioDecodeError

from ..conftest import tone, write_wav

SR = 16000


def peak_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * sr / len(x))


@pytest.mark.parametrize("ext, subtype", [("wav", "PCM_16"), ("wav", "FLOAT"), ("flac", None), ("ogg", None),
                                          ("opus", None), ("mp3", None)])
def test_formats_decode_to_float_mono_at_rate(tmp_path, ext, subtype):
    src = tone(440, 1.0, 44100)
    kwargs = {"format": "OGG", "subtype": "OPUS"} if ext == "opus" else {}
    path = tmp_path / f"a.{ext}"
    if ext == "opus":
        sf.write(str(path), tone(440, 1.0, 48000), 48000, **kwargs)
    else:
        write_wav(path, src, 44100, subtype)
    y = load_audio(path, SR)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) / SR - 1.0) < 0.1  # codecs may pad a little
    assert abs(peak_hz(y[1000:15000], SR) - 440) < 5


@pytest.mark.skipif(not ffmpeg_available(), reason="ffmpeg is not installed")
def test_m4a_goes_through_ffmpeg(tmp_path):
    import subprocess

    wav = write_wav(tmp_path / "a.wav", tone(660, 1.0, 22050), 22050)
    m4a = tmp_path / "a.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(wav), "-c:a", "aac", str(m4a)], check=True)
    y = load_audio(m4a, SR)
    assert abs(len(y) / SR - 1.0) < 0.1
    assert abs(peak_hz(y[2000:14000], SR) - 660) < 5


def test_stereo_is_mixed_down(tmp_path):
    left, right = tone(300, 0.5, SR), tone(300, 0.5, SR) * 0
    path = write_wav(tmp_path / "st.wav", np.stack([left, right], axis=1), SR, "FLOAT")
    y = load_audio(path, SR)
    np.testing.assert_allclose(y, left / 2, atol=1e-6)


def test_eight_channels_and_extreme_rates(tmp_path):
    multi = np.tile(tone(500, 0.5, 8000)[:, None], (1, 8))
    assert load_audio(write_wav(tmp_path / "m.wav", multi, 8000), SR).shape[0] == 8000
    hi = write_wav(tmp_path / "hi.wav", tone(1000, 0.5, 192000), 192000)
    y = load_audio(hi, SR)
    assert y.shape[0] == 8000 and abs(peak_hz(y, SR) - 1000) < 5


def test_resampling_is_high_quality(tmp_path):
    # A 7 kHz tone at 44.1 kHz resampled to 16 kHz keeps its frequency, and one at 9 kHz (above the new
    # Nyquist) is removed instead of aliasing down to 7 kHz.
    keep = load_audio(write_wav(tmp_path / "k.wav", tone(7000, 1.0, 44100), 44100, "FLOAT"), SR)
    gone = load_audio(write_wav(tmp_path / "g.wav", tone(9000, 1.0, 44100), 44100, "FLOAT"), SR)
    assert abs(peak_hz(keep, SR) - 7000) < 5
    assert np.sqrt(np.mean(gone[1000:-1000] ** 2)) < 1e-3 * np.sqrt(np.mean(keep ** 2))


@pytest.mark.parametrize("content, reason", [
    (b"", "empty file"),
    (b"\x00\x01garbage" * 100, "not readable"),
])
def test_bad_files_raise_decode_errors_naming_the_file(tmp_path, content, reason):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioDecodeError, match=reason) as info:
        load_audio(path, SR)
    assert "bad.wav" in str(info.value)


def test_nan_silence_and_too_short_are_refused(tmp_path):
    nan = tone(300, 0.5, SR)
    nan[100] = np.nan
    with pytest.raises(AudioDecodeError, match="NaN"):
        load_audio(write_wav(tmp_path / "nan.wav", nan, SR, "FLOAT"), SR)
    with pytest.raises(AudioDecodeError, match="silent"):
        load_audio(write_wav(tmp_path / "zero.wav", np.zeros(SR, np.float32), SR), SR, reject_silent=True)
    with pytest.raises(AudioDecodeError, match="too short"):
        load_audio(write_wav(tmp_path / "one.wav", np.ones(1, np.float32) * 0.1, SR), SR, min_duration_s=0.05)
    with pytest.raises(AudioDecodeError, match="does not exist"):
        load_audio(tmp_path / "missing.wav", SR)


def test_streaming_equals_whole_file_decoding(tmp_path):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(44100 * 7) * 0.1).astype(np.float32)
    path = write_wav(tmp_path / "long.flac", x, 44100)
    whole = load_audio(path, SR)
    streamed = np.concatenate(list(stream_audio(path, SR, block_s=0.7)))
    assert whole.shape == streamed.shape
    np.testing.assert_allclose(whole, streamed, atol=1e-6)


def test_audio_info_reads_header_only(tmp_path):
    path = write_wav(tmp_path / "i.wav", np.zeros((22050, 2), np.float32), 22050)
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.frames) == (22050, 2, 22050)


@pytest.mark.skipif(not ffmpeg_available(), reason="ffmpeg is not installed")
def test_vbr_mp3_without_xing_header_is_decoded_whole(tmp_path, monkeypatch):
    import subprocess

    rng = np.random.default_rng(0)
    x = (tone(300, 9.0, 44100) * (1 + 0.5 * np.sin(np.arange(9 * 44100) / 44100 * 3))
         + 0.05 * rng.standard_normal(9 * 44100)).astype(np.float32)
    wav = write_wav(tmp_path / "v.wav", x, 44100)
    mp3 = tmp_path / "v.mp3"
    proc = subprocess.run(["ffmpeg", "-v", "error", "-i", str(wav), "-c:a", "libmp3lame", "-q:a", "6",
                           "-write_xing", "0", str(mp3)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip("this ffmpeg has no libmp3lame encoder")
    assert abs(len(load_audio(mp3, SR)) / SR - 9.0) < 0.1
    assert abs(audio_info(mp3).duration_s - 9.0) < 0.1
    # in-process: the same without ffmpeg (libsndfile alone reads such a file as about 2 s)
    monkeypatch.setattr("earmark.audio.io.ffmpeg_available", lambda: False)
    assert abs(len(load_audio(mp3, SR)) / SR - 9.0) < 0.1
