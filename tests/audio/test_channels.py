"""audio.channels: what a run hears of a multichannel file, the same in training, predict, serve and ONNX.

The data is synthesized stereo where only the right channel tells the classes apart (the left channel holds the
*other* class's sound), so a run that hears the wrong channel is visibly wrong.
"""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from fastapi.testclient import TestClient

from earmark.audio.io import load_audio, select_channels, stream_audio
from earmark.config import AudioConfig, load_recipe
from earmark.data.store import SHARD_FILES, STORE_VERSION, store_key
from earmark.errors import AudioDecodeError, ConfigError
from earmark.inference.channel_graph import ChannelSelect, lift_mono
from earmark.inference.onnx import OnnxModel, export_onnx
from earmark.inference.predictor import Predictor

from ..conftest import FAST, write_wav

SR = 16000
OTHER = {"tone": "knock", "knock": "tone"}
TOL = 1e-4


def stereo(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    return np.stack([left, right], axis=1).astype(np.float32)


# ------------------------------------------------------------------------------------------ selection


def test_select_channels_keeps_what_the_setting_names():
    rng = np.random.default_rng(0)
    block = rng.uniform(-1, 1, (1000, 3)).astype(np.float32)
    left, right, third = block[:, 0], block[:, 1], block[:, 2]
    np.testing.assert_array_equal(select_channels(block, "left"), left)
    np.testing.assert_array_equal(select_channels(block, "right"), right)
    np.testing.assert_array_equal(select_channels(block, 1), right)
    np.testing.assert_array_equal(select_channels(block, 2), third)
    np.testing.assert_allclose(select_channels(block, "mid"), (left + right) / 2, atol=1e-7)
    np.testing.assert_allclose(select_channels(block, "side"), (left - right) / 2, atol=1e-7)
    np.testing.assert_allclose(select_channels(block, "mix"), block.mean(axis=1), atol=1e-7)
    mono = block[:, :1]
    np.testing.assert_array_equal(select_channels(mono, "mix"), mono[:, 0])
    np.testing.assert_array_equal(select_channels(mono, "left"), mono[:, 0])  # a mono file has a channel 0
    for setting in ("right", "mid", "side", 1):
        with pytest.raises(AudioDecodeError, match="missing channel"):
            select_channels(mono, setting, "x.wav")
    with pytest.raises(AudioDecodeError, match="channel 3.*has 3 channels"):
        select_channels(block, 3, "x.wav")


def test_decoding_a_stereo_file_keeps_the_chosen_channel(tmp_path: Path):
    t = np.arange(SR) / SR
    left, right = 0.5 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 1000 * t)
    path = write_wav(tmp_path / "s.flac", stereo(left, right), SR, subtype="PCM_24")
    got = {c: load_audio(path, SR, channels=c) for c in ("mix", "left", "right", "mid", "side", 0, 1)}
    np.testing.assert_allclose(got["left"], left, atol=1e-6)
    np.testing.assert_allclose(got["right"], right, atol=1e-6)
    np.testing.assert_array_equal(got[0], got["left"])
    np.testing.assert_array_equal(got[1], got["right"])
    np.testing.assert_allclose(got["mid"], (left + right) / 2, atol=1e-6)
    np.testing.assert_allclose(got["side"], (left - right) / 2, atol=1e-6)
    np.testing.assert_allclose(got["mix"], got["mid"], atol=1e-7)  # stereo mix-down = mid
    # resampled, block by block: the right channel at 8 kHz is the 1 kHz tone, not the 440 Hz one
    half = np.concatenate(list(stream_audio(path, 8000, block_s=0.1, channels="right")))
    spectrum = np.abs(np.fft.rfft(half))
    assert abs(np.argmax(spectrum) * 8000 / half.size - 1000) < 5


def test_a_missing_channel_is_an_error_naming_the_file(tmp_path: Path):
    mono = write_wav(tmp_path / "mono.wav", np.full(SR, 0.1, np.float32), SR)
    with pytest.raises(AudioDecodeError) as err:
        load_audio(mono, SR, channels="right")
    assert err.value.path == mono or str(mono) in str(err.value)
    assert "audio.channels=right" in err.value.reason and "1 channel" in err.value.reason
    with pytest.raises(AudioDecodeError, match="first two channels"):
        next(stream_audio(mono, SR, channels="side"))  # refused before any decoding


# --------------------------------------------------------------------------------------------- config


def test_channel_setting_is_validated_and_recorded():
    assert load_recipe("default").audio.channels == "mix"
    assert load_recipe("default", ["audio.channels=right"]).audio.channels == "right"
    assert load_recipe("default", ["audio.channels=2"]).audio.channels == 2
    assert "channels: side" in load_recipe("default", ["audio.channels=side"]).to_yaml()
    for bad in ("center", "-1", "1.5"):
        with pytest.raises(ConfigError, match="audio.channels"):
            load_recipe("default", [f"audio.channels={bad}"])


def test_store_key_is_unchanged_for_the_mix_and_new_for_a_channel(tmp_path: Path):
    import hashlib

    f = write_wav(tmp_path / "a.wav", np.full(SR, 0.1, np.float32), SR)
    # the key of the mix-down is the one stores had before the setting existed (they stay reusable); likewise
    # without separation options
    settings = {"version": STORE_VERSION, "shard_files": SHARD_FILES, **AudioConfig().model_dump(mode="json")}
    del settings["channels"], settings["separation_options"]
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    st = f.stat()
    h.update(json.dumps([str(f.resolve()), st.st_size, st.st_mtime_ns]).encode())
    assert store_key([f], AudioConfig()) == h.hexdigest()[:24]
    keys = {c: store_key([f], AudioConfig(channels=c)) for c in ("mix", "left", "right", "mid", "side", 0, 1, 2)}
    assert len(set(keys.values())) == 6 and keys["right"] == keys[1] and keys["left"] == keys[0]


# ------------------------------------------------------------------------------- graph module (no export)


@pytest.mark.parametrize("setting", ["left", "right", "mid", "side", 0, 1, 2])
def test_graph_selection_equals_decoding_selection(setting):
    rng = np.random.default_rng(1)
    files = rng.uniform(-1, 1, (2, 3, 500)).astype(np.float32)  # (batch, channels, samples)
    graph = ChannelSelect(setting)(torch.from_numpy(files)).numpy()
    python = np.stack([select_channels(f.T, setting) for f in files])
    np.testing.assert_array_equal(graph, python)
    mono = files[:, 0]
    np.testing.assert_array_equal(ChannelSelect(setting)(torch.from_numpy(lift_mono(mono, setting))).numpy(), mono)


# ---------------------------------------------------------------------------------- a run on one channel


def stereo_dataset(root: Path, per_class: int = 8) -> Path:
    """Each file: its class's sound on the right, the other class's sound on the left; plus one mono file."""
    from earmark.demo import synth

    rng = np.random.default_rng(3)
    for label, other in OTHER.items():
        for k in range(per_class):
            seconds = rng.uniform(1.0, 1.6)
            right, left = synth(label, seconds, SR, rng), synth(other, seconds, SR, rng)
            write_wav(root / label / f"{label}_{k:02d}.flac", stereo(left, right), SR)
    write_wav(root / "tone" / "mono.wav", synth("tone", 1.2, SR, rng), SR)
    return root


@pytest.fixture(scope="module")
def right_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    import earmark

    data = stereo_dataset(tmp_path_factory.mktemp("stereo") / "data")
    out = tmp_path_factory.mktemp("runs") / "right"
    earmark.train(data, out, "default", FAST + ["train.epochs=6", "audio.channels=right", "split.test_size=0.25"],
                  show_progress=False)
    return data, out


def test_training_hears_the_chosen_channel_and_skips_files_without_it(right_run):
    data, out = right_run
    assert yaml.safe_load((out / "config.yaml").read_text())["audio"]["channels"] == "right"
    with open(out / "skipped.csv", newline="") as f:
        skipped = list(csv.DictReader(f))
    assert [Path(r["path"]).name for r in skipped] == ["mono.wav"]
    assert "missing channel" in skipped[0]["reason"] and "audio.channels=right" in skipped[0]["reason"]
    # the run hears the right channel: every stereo file is called by its right channel's sound
    results = Predictor(out).predict([data])
    good = [r for r in results if "error" not in r]
    right = sum(r["label"] == Path(r["path"]).parent.name for r in good)
    assert len(good) == 16 and right >= 14, [(r["path"], r["label"]) for r in good]
    errors = [r for r in results if "error" in r]
    assert [Path(r["path"]).name for r in errors] == ["mono.wav"] and "missing channel" in errors[0]["error"]


def test_predict_waveform_hears_the_same_channel(right_run):
    data, out = right_run
    p = Predictor(out)
    path = data / "knock" / "knock_00.flac"
    wave, sr = sf.read(str(path), dtype="float32")
    by_file = p.predict_file(path)["probabilities"]
    for arr in (wave, wave.T):  # (samples, channels) and (channels, samples)
        by_array = p.predict_waveform(arr, sr)["probabilities"]
        assert by_array == pytest.approx(by_file, abs=1e-6)
    with pytest.raises(AudioDecodeError, match="missing channel"):
        p.predict_waveform(wave[:, :1], sr)


def _with_channels(run: Path, dest: Path, channels: str) -> Path:
    """A copy of ``run`` whose recipe hears ``channels`` (same weights): for exports of other settings."""
    shutil.copytree(run, dest)
    cfg = yaml.safe_load((dest / "config.yaml").read_text())
    cfg["audio"]["channels"] = channels
    (dest / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (dest / "model.onnx").unlink(missing_ok=True)
    return dest


@pytest.mark.parametrize("channels", ["right", "side"])
def test_onnx_graph_selects_the_channel_like_the_predictor(right_run, tmp_path: Path, channels: str):
    import onnxruntime as ort

    data, out = right_run
    run = out if channels == "right" else _with_channels(out, tmp_path / "run", channels)
    path = export_onnx(run, tmp_path / "m.onnx")
    model = OnnxModel(path)
    assert model.channels == channels and "channels, samples" in model.metadata["earmark.inputs"]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert len(sess.get_inputs()[0].shape) == 3
    torch_p, onnx_p = Predictor(run), Predictor(run, backend="onnx", onnx_path=path)
    labels = torch_p.labels
    for f in [data / "tone" / "tone_01.flac", data / "knock" / "knock_02.flac"]:
        wave, _ = sf.read(str(f), dtype="float32", always_2d=True)  # (samples, 2): the raw stereo file
        probs, seg_probs = sess.run(None, {"waveform": np.ascontiguousarray(wave.T[None])})
        ref = torch_p.predict_file(f, segments=True)
        want = np.array([ref["probabilities"][lbl] for lbl in labels])
        want_segs = np.array([[s["probabilities"][lbl] for lbl in labels] for s in ref["segments"]])
        np.testing.assert_allclose(probs[0], want, atol=TOL)
        np.testing.assert_allclose(seg_probs[0], want_segs, atol=TOL)
        via_onnx = onnx_p.predict_file(f)["probabilities"]  # the Predictor's ONNX backend, on decoded segments
        assert [via_onnx[lbl] for lbl in labels] == pytest.approx(list(want), abs=TOL)
    with pytest.raises(ValueError, match="channels, samples"):
        model.run(np.zeros((1, 2, 10, 10), np.float32))


def test_an_export_at_another_input_rate_selects_then_resamples(right_run, tmp_path: Path):
    """``--input-rate`` for a run that hears one channel: the graph takes stereo at 8 kHz, keeps the right
    channel and resamples it, within 0.01 of soxr-resampling the file and running the run's own graph."""
    from earmark.audio.io import resample

    data, out = right_run
    model8k = OnnxModel(export_onnx(out, tmp_path / "m8k.onnx", input_rate=8000))
    plain = OnnxModel(export_onnx(out, tmp_path / "m.onnx"))
    assert model8k.input_rate == 8000 and model8k.channels == "right"
    assert "8000 Hz" in model8k.metadata["earmark.inputs"] and "channels, samples" in model8k.metadata["earmark.inputs"]
    for f in [data / "tone" / "tone_01.flac", data / "knock" / "knock_02.flac"]:
        wave, sr = sf.read(str(f), dtype="float32", always_2d=True)
        at8k = np.stack([resample(np.ascontiguousarray(wave[:, c]), sr, 8000) for c in range(2)])  # (2, samples)
        back = np.stack([resample(c, 8000, sr) for c in at8k])
        got = model8k.run(at8k[None])[0]
        want = plain.run(back[None])[0]
        assert np.abs(got - want).max() < 0.01


def test_serve_answers_422_for_a_file_without_the_channel(right_run, tmp_path: Path):
    from earmark.serve.app import ServeSettings, create_app

    data, out = right_run
    client = TestClient(create_app(out, ServeSettings(tmp_dir=str(tmp_path))))
    mono = (data / "tone" / "mono.wav").read_bytes()
    r = client.post("/v1/predict", files={"file": ("mine.wav", mono, "audio/wav")})
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "missing_channel" and r.json()["detail"].startswith("mine.wav")
    assert "audio.channels=right" in r.json()["detail"]
    good = data / "knock" / "knock_03.flac"
    r = client.post("/v1/predict", files={"file": ("ok.flac", good.read_bytes(), "audio/flac")})
    assert r.status_code == 200, r.text
    assert r.json()["probabilities"] == pytest.approx(Predictor(out).predict_file(good)["probabilities"], abs=1e-5)
