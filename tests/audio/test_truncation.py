"""Truncated files (issue 17, item 1) and plain decode reasons (item 5), through every path that decodes:
the decoder, prepare (skipped.csv), predict; the server's 422 is in tests/serve/test_errors_access.py."""
from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from earmark.audio.header import stated_length
from earmark.audio.io import audio_info, load_audio
from earmark.errors import AudioDecodeError

from ..conftest import make_class_folders, tone

SR = 22050

# (extension, soundfile format, subtype): every container whose header states a length
FORMATS = [("wav", "WAV", "PCM_U8"), ("wav", "WAV", "PCM_16"), ("wav", "WAV", "PCM_24"), ("wav", "WAV", "PCM_32"),
           ("wav", "WAV", "FLOAT"), ("wav", "WAV", "DOUBLE"), ("wav", "WAV", "ULAW"), ("wav", "WAV", "IMA_ADPCM"),
           ("wav", "WAVEX", "PCM_16"), ("wav", "RF64", "PCM_16"), ("flac", "FLAC", "PCM_16"),
           ("flac", "FLAC", "PCM_24"), ("aiff", "AIFF", "PCM_16"), ("aiff", "AIFF", "FLOAT"), ("au", "AU", "PCM_16"),
           ("mp3", "MP3", "MPEG_LAYER_III")]


def _write(path: Path, fmt: str, subtype: str, seconds: float = 4.0, channels: int = 1) -> Path:
    x = tone(440, seconds, SR, amp=0.3)
    if channels > 1:
        x = np.stack([x] * channels, axis=1)
    sf.write(str(path), x, SR, format=fmt, subtype=subtype)
    return path


def _cut(path: Path, keep: float) -> Path:
    data = path.read_bytes()
    out = path.with_name("cut_" + path.name)
    out.write_bytes(data[: int(len(data) * keep)])
    return out


@pytest.mark.parametrize("ext, fmt, subtype", FORMATS, ids=[f"{f}-{s}" for _, f, s in FORMATS])
def test_a_cut_file_is_reported_as_truncated_and_the_whole_one_is_not(tmp_path: Path, ext: str, fmt: str,
                                                                    subtype: str):
    whole = _write(tmp_path / f"a.{ext}", fmt, subtype, channels=2 if subtype == "PCM_24" else 1)
    assert len(load_audio(whole, 16000)) == pytest.approx(4.0 * 16000, abs=0.05 * 16000)
    cut = _cut(whole, 0.5)
    with pytest.raises(AudioDecodeError, match=r"^.*cut_a\.\w+: truncated: the header states 4\.0\d\d s") as info:
        load_audio(cut, 16000)
    assert str(info.value).count("cut_a") == 1  # the file is named once
    if ext != "mp3" and stated_length(whole).exact:  # PCM and FLAC: a cut of a few bytes is caught too (lossy: 2%)
        with pytest.raises(AudioDecodeError, match="truncated"):
            load_audio(_cut(whole, 0.98), 16000)


def test_the_issue_reproduction_five_seconds_cut_to_110272_bytes(tmp_path: Path):
    path = tmp_path / "five.wav"
    sf.write(str(path), tone(300, 5.0, SR, amp=0.3), SR, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(path.read_bytes()[:110_272])
    assert sf.info(str(cut)).frames == 55114  # libsndfile alone sees a valid 2.5-s file
    with pytest.raises(AudioDecodeError, match=r"states 5\.000 s \(110250 frames\) but only 2\.500 s"):
        load_audio(cut, 16000)
    assert audio_info(cut).frames == 110250  # what the header states


def test_header_lengths_unknown_are_not_guessed(tmp_path: Path):
    path = _write(tmp_path / "s.wav", "WAV", "PCM_16", 1.0)
    data = bytearray(path.read_bytes())
    i = data.index(b"data")
    data[i + 4: i + 8] = struct.pack("<I", 0xFFFFFFFF)  # a streaming writer that could not seek back
    path.write_bytes(bytes(data))
    assert stated_length(path) is None
    assert len(load_audio(path, SR)) == SR  # decoded as it is, not refused
    assert stated_length(_write(tmp_path / "o.ogg", "OGG", "VORBIS")) is None  # Ogg states no total
    assert stated_length(tmp_path / "missing.wav") is None
    assert stated_length(_write(tmp_path / "m.mp3", "MP3", "MPEG_LAYER_III")) is None


def test_max_duration_reads_a_prefix_without_calling_it_truncated(tmp_path: Path):
    whole = _write(tmp_path / "long.wav", "WAV", "PCM_16", 4.0)
    assert len(load_audio(whole, SR, max_duration_s=1.0)) == SR
    with pytest.raises(AudioDecodeError, match="truncated"):  # cut at 2 s, asked for 3 s: still a cut
        load_audio(_cut(whole, 0.5), SR, max_duration_s=3.0)
    assert len(load_audio(_cut(whole, 0.5), SR, max_duration_s=1.0)) == SR  # the first second is whole


@pytest.mark.parametrize("name, content, reason", [
    # (with ffmpeg installed, its own words follow, e.g. "; Invalid data found when processing input)")
    ("random.mp3", os.urandom(100), "not readable as audio (no audio frames found; no audio format recognised"),
    ("text.wav", b"hello, this is not audio\n" * 10, "not readable as audio (no audio format recognised"),
    ("riff.wav", b"RIFF" + bytes(200), "not readable as audio"),
])
def test_decode_reasons_name_the_file_once_and_say_what_is_wrong(tmp_path: Path, name: str, content: bytes,
                                                                 reason: str):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AudioDecodeError) as info:
        load_audio(path, 16000)  # a Path, as the pipeline passes it
    message = str(info.value)
    assert message.startswith(f"{path}: {reason}"), message
    assert message.count(name) == 1 and "PosixPath" not in message and "does not exist" not in message


def test_prepare_skips_a_truncated_file_with_the_reason(tmp_path: Path):
    from typer.testing import CliRunner

    from earmark.cli import app

    data = make_class_folders(tmp_path / "data", per_class=3, classes=("tone", "hiss"))
    whole = _write(tmp_path / "w.flac", "FLAC", "PCM_16", 2.0)
    (data / "tone" / "cut.flac").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    r = CliRunner().invoke(app, ["prepare", str(data)])
    assert r.exit_code == 0, r.output
    assert "6 prepared" in r.output and "1 skipped" in r.output
    skipped = [line for line in r.output.splitlines() if line.strip().startswith("skipped")]
    assert len(skipped) == 1 and "cut.flac: truncated: the header states 2.000 s" in skipped[0]


def test_predict_gives_an_error_entry_for_a_truncated_file(trained_run: Path, tmp_path: Path):
    import earmark

    whole = _write(tmp_path / "w.wav", "WAV", "PCM_16", 3.0)
    cut = _cut(whole, 0.5)
    results = earmark.predict(trained_run, [whole, cut])
    assert "label" in results[0]
    assert results[1]["path"] == str(cut) and results[1]["error"].startswith("truncated:")
