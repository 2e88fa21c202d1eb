"""Vocal separation: measured on mixtures of a known voice-like signal and a looped accompaniment."""
from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from earmark.audio.separate import chunked, separate_vocals
from earmark.errors import ConfigError

from ..conftest import FAST, make_class_folders

SR = 16000


# ----------------------------------------------------------------------------------------- test signals


def voice_like(seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Syllables of a harmonic source (15 partials, 1/h) whose pitch glides between 140 and 300 Hz with
    vibrato, each with its own contour, separated by pauses: nothing in it repeats."""
    n = int(seconds * sr)
    out = np.zeros(n)
    t0 = 0.1
    while t0 < seconds - 0.5:
        dur = rng.uniform(0.15, 0.45)
        m, s = int(dur * sr), int(t0 * sr)
        tt = np.arange(m) / sr
        f0 = np.linspace(rng.uniform(140, 300), rng.uniform(140, 300), m)
        f0 *= 1 + 0.02 * np.sin(2 * np.pi * rng.uniform(4, 7) * tt)
        phase = 2 * np.pi * np.cumsum(f0) / sr
        syllable = sum(np.sin(h * phase) / h for h in range(1, 16))
        out[s: s + m] += syllable * np.sin(np.pi * np.linspace(0, 1, m)) ** 0.5
        t0 += dur + rng.uniform(0.05, 0.25)
    return out


def looped_accompaniment(seconds: float, sr: int, rng: np.random.Generator, bar_s: float = 2.0) -> np.ndarray:
    """One bar (kick, snare, hi-hats, two sustained chords) looped for ``seconds``."""
    m = int(bar_s * sr)
    bar = np.zeros(m)
    hit = np.arange(int(0.15 * sr)) / sr
    for beat in range(4):
        s = int(beat * m / 4)
        if beat % 2 == 0:
            bar[s: s + hit.size] += np.sin(2 * np.pi * 60 * hit) * np.exp(-30 * hit)        # kick
        else:
            bar[s: s + hit.size] += 0.6 * rng.standard_normal(hit.size) * np.exp(-40 * hit)  # snare
        h = int((beat + 0.5) * m / 4)
        tick = np.arange(int(0.05 * sr)) / sr
        bar[h: h + tick.size] += 0.3 * rng.standard_normal(tick.size) * np.exp(-80 * tick)   # hi-hat
    t = np.arange(m) / sr
    for k, chord in enumerate([(220, 277, 330), (196, 247, 294)]):
        s, e = k * m // 2, (k + 1) * m // 2
        tt = t[s:e]
        bar[s:e] += sum(0.25 * np.sin(2 * np.pi * f * tt) + 0.1 * np.sin(4 * np.pi * f * tt) for f in chord)
    return np.tile(bar, int(np.ceil(seconds / bar_s)))[: int(seconds * sr)]


def mixture(seconds: float, seed: int, snr_db: float = 0.0, bar_s: float = 2.0
            ) -> tuple[np.ndarray, np.ndarray]:
    """(voice, voice + accompaniment), the voice ``snr_db`` above the accompaniment."""
    rng = np.random.default_rng(seed)
    v = voice_like(seconds, SR, rng)
    a = looped_accompaniment(seconds, SR, rng, bar_s)
    a *= np.sqrt(np.sum(v ** 2) / np.sum(a ** 2)) * 10 ** (-snr_db / 20)
    return v, v + a


def sdr(ref: np.ndarray, est: np.ndarray) -> float:
    """Signal-to-distortion ratio in dB: 10 log10(|s|^2 / |s - s_hat|^2)."""
    return float(10 * np.log10(np.sum(ref ** 2) / np.sum((ref - est) ** 2)))


def si_sdr(ref: np.ndarray, est: np.ndarray) -> float:
    """Scale-invariant SDR in dB (the estimate may differ from the reference by a gain)."""
    target = np.dot(est, ref) / np.dot(ref, ref) * ref
    return float(10 * np.log10(np.sum(target ** 2) / np.sum((target - est) ** 2)))


# ------------------------------------------------------------------------------------------- separation

# Measured over 4 seeds x 3 bar lengths x {16, 22.05} kHz at 0 dB: repet gained 7.8-11.4 dB, hpss 4.8-7.6 dB.
MARGIN_DB = {"repet": 6.0, "hpss": 3.0}


@pytest.mark.parametrize("method", ["repet", "hpss"])
@pytest.mark.parametrize("seed,snr_db,bar_s", [(0, 0.0, 2.0), (1, -5.0, 1.5)])
def test_separated_vocals_are_closer_to_the_voice(method: str, seed: int, snr_db: float, bar_s: float):
    voice, mix = mixture(12.0, seed, snr_db, bar_s)
    before, before_si = sdr(voice, mix), si_sdr(voice, mix)
    assert before == pytest.approx(snr_db, abs=0.3)
    out = separate_vocals(mix.astype(np.float32), SR, method)
    assert out.dtype == np.float32 and out.shape == mix.shape
    gain, gain_si = sdr(voice, out) - before, si_sdr(voice, out) - before_si
    assert gain > MARGIN_DB[method], f"{method}: SDR {before:.1f} -> {sdr(voice, out):.1f} dB"
    assert gain_si > MARGIN_DB[method] - 1.0


@pytest.mark.parametrize("method,kept_db,removed_db", [("repet", 20.0, -15.0), ("hpss", 10.0, -15.0)])
def test_a_sound_heard_once_is_kept_and_a_loop_is_removed(method: str, kept_db: float, removed_db: float):
    rng = np.random.default_rng(0)
    once = np.zeros(4 * SR)
    once[SR: 2 * SR] = voice_like(1.0, SR, rng)  # one phrase in silence: nothing repeats
    assert sdr(once, separate_vocals(once.astype(np.float32), SR, method)) > kept_db
    loop = looped_accompaniment(12.0, SR, rng)     # accompaniment alone: no vocals at all
    out = separate_vocals(loop.astype(np.float32), SR, method)
    assert 10 * np.log10(np.sum(out.astype(np.float64) ** 2) / np.sum(loop ** 2)) < removed_db


def test_period_weighting_is_what_makes_repet_work():
    """Plain REPET-SIM matches frames where the voice sings a similar note; the beat-spectrum weighting
    matches frames where the accompaniment repeats."""
    from earmark.audio.separate import repet_vocals

    voice, mix = mixture(12.0, 0)
    plain = sdr(voice, repet_vocals(mix, SR, period_weight=0.0))
    weighted = sdr(voice, repet_vocals(mix, SR))
    assert weighted > plain + 3.0, (plain, weighted)


def test_separation_options_reach_the_separator_and_unknown_ones_are_refused():
    from earmark.audio.separate import repet_vocals
    from earmark.config import load_recipe

    voice, mix = mixture(8.0, 0)
    tuned = separate_vocals(mix.astype(np.float32), SR, "repet", options={"min_distance_s": 0.5})
    assert np.allclose(tuned, repet_vocals(mix, SR, min_distance_s=0.5), atol=1e-5)
    assert not np.allclose(tuned, separate_vocals(mix.astype(np.float32), SR, "repet"), atol=1e-3)
    with pytest.raises(ConfigError, match="min_distance is not a setting of repet.*min_distance_s"):
        separate_vocals(mix, SR, "repet", options={"min_distance": 0.5})
    with pytest.raises(ConfigError, match="min_distance_s is not a setting of audio.separation=hpss"):
        load_recipe("singer-gender-published", ["audio.separation=hpss",
                                                "audio.separation_options={min_distance_s: 0.5}"])
    recipe = load_recipe("singer-gender-published", ["audio.separation_options={max_repetitions: 20}"])
    assert recipe.audio.separation_options == {"max_repetitions": 20}


def test_long_recordings_are_processed_in_chunks():
    voice, mix = mixture(40.0, 2)
    out = separate_vocals(mix.astype(np.float32), SR, "repet", chunk_s=15.0)
    assert out.shape == mix.shape and np.isfinite(out).all()
    assert sdr(voice, out) - sdr(voice, mix) > MARGIN_DB["repet"]
    # the cross-fade itself is exact: an identity "separator" gives the input back
    z = np.random.default_rng(0).standard_normal(100_003)
    np.testing.assert_allclose(chunked(z, SR, lambda c: c, chunk_s=1.0, overlap_s=0.25), z, atol=1e-12)


@pytest.mark.parametrize("method", ["repet", "hpss"])
@pytest.mark.parametrize("n", [0, 1, 300, 5000])
def test_short_and_silent_input(method: str, n: int):
    x = (0.1 * np.random.default_rng(n).standard_normal(n)).astype(np.float32)
    out = separate_vocals(x, SR, method)
    assert out.shape == (n,) and out.dtype == np.float32 and np.isfinite(out).all()
    assert np.abs(separate_vocals(np.zeros(SR, np.float32), SR, method)).max() == 0.0


def test_bad_arguments():
    with pytest.raises(ConfigError, match="unknown vocal separation method 'spleeter'"):
        separate_vocals(np.zeros(100, np.float32), SR, "spleeter")
    with pytest.raises(ValueError, match="mono"):
        separate_vocals(np.zeros((2, 100), np.float32), SR)


# ----------------------------------------------------------------------------------------------- Demucs


class FakeDemucs:
    """Stands in for a Demucs model: 4 stems at 44.1 kHz stereo."""

    sources = ["drums", "bass", "other", "vocals"]
    samplerate = 44100
    audio_channels = 2


def _install_fake_demucs(monkeypatch: pytest.MonkeyPatch, model: object) -> dict:
    """Put a fake `demucs` package in sys.modules; returns what its functions were called with."""
    import torch

    calls: dict = {}

    def apply_model(m, mix, **kw):
        calls["apply"] = (m, tuple(mix.shape), kw)
        stems = [0.1 * mix, -0.2 * mix, 0.3 * mix, 0.5 * mix]  # vocals: half the (normalised) mixture
        return torch.stack(stems, dim=1)

    def load_model(package):
        calls["load_model"] = package
        return model

    def get_model(name, repo):
        calls["get_model"] = (name, repo)
        return model

    pkg = types.ModuleType("demucs")
    modules = {"demucs": pkg, "demucs.apply": types.SimpleNamespace(apply_model=apply_model),
               "demucs.states": types.SimpleNamespace(load_model=load_model),
               "demucs.pretrained": types.SimpleNamespace(get_model=get_model)}
    for name, mod in modules.items():
        monkeypatch.setitem(sys.modules, name, mod)
    from earmark.audio import separate

    monkeypatch.setattr(separate, "_DEMUCS_CACHE", {})
    return calls


def test_demucs_adapter_returns_the_vocals_stem(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    import torch

    ckpt = tmp_path / "htdemucs.th"
    torch.save({"klass": "fake", "args": [], "kwargs": {}, "state": {}}, ckpt)
    model = FakeDemucs()
    calls = _install_fake_demucs(monkeypatch, model)
    t = np.arange(2 * SR) / SR
    x = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    out = separate_vocals(x, SR, "demucs", checkpoint=str(ckpt))
    assert calls["load_model"]["klass"] == "fake"
    m, shape, kw = calls["apply"]
    assert m is model and shape == (1, 2, 2 * 44100)  # one item, stereo, resampled to the model's rate
    assert kw["split"] is True and kw["progress"] is False
    assert out.shape == x.shape and out.dtype == np.float32
    mid = slice(1000, -1000)  # away from the resampler's edges
    np.testing.assert_allclose(out[mid], 0.5 * x[mid], atol=0.01)  # the vocals stem, not another one


def test_demucs_bag_of_models_yaml_goes_through_the_local_repo(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path):
    calls = _install_fake_demucs(monkeypatch, FakeDemucs())
    bag = tmp_path / "mdx_q.yaml"
    bag.write_text("models: ['abc']\n")
    separate_vocals(np.ones(SR, np.float32) * 0.1, SR, "demucs", checkpoint=str(bag))
    assert calls["get_model"] == ("mdx_q", tmp_path)


def test_demucs_errors_say_what_to_do(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    x = np.ones(SR, np.float32) * 0.1
    with pytest.raises(ConfigError, match="audio.demucs_checkpoint=PATH"):
        separate_vocals(x, SR, "demucs", checkpoint=None)
    with pytest.raises(ConfigError, match="no such file"):
        separate_vocals(x, SR, "demucs", checkpoint=str(tmp_path / "missing.th"))
    ckpt = tmp_path / "model.th"
    ckpt.write_bytes(b"not a checkpoint")
    monkeypatch.setitem(sys.modules, "demucs", None)  # not installed: import fails
    for name in ("demucs.apply", "demucs.states", "demucs.pretrained"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(ConfigError, match="pip install demucs"):
        separate_vocals(x, SR, "demucs", checkpoint=str(ckpt))
    # installed, but the file is not a Demucs model / the model has no vocals stem
    _install_fake_demucs(monkeypatch, FakeDemucs())
    with pytest.raises(ConfigError, match="not a loadable Demucs model"):
        separate_vocals(x, SR, "demucs", checkpoint=str(ckpt))
    no_vocals = FakeDemucs()
    no_vocals.sources = ["drums", "bass", "other"]
    _install_fake_demucs(monkeypatch, no_vocals)
    import torch

    torch.save({"klass": "fake"}, ckpt)
    with pytest.raises(ConfigError, match="no 'vocals' stem"):
        separate_vocals(x, SR, "demucs", checkpoint=str(ckpt))


def test_a_demucs_setting_error_stops_preparation_instead_of_skipping_every_file(tmp_path: Path):
    from earmark.config import AudioConfig
    from earmark.data.store import prepare_store

    data = make_class_folders(tmp_path / "data", per_class=2)
    paths = sorted(data.rglob("*.wav"))
    with pytest.raises(ConfigError, match="demucs_checkpoint"):
        prepare_store(paths, AudioConfig(separation="demucs"), tmp_path / "cache", workers=1,
                      show_progress=False)


# ------------------------------------------------------------------------------------------- end to end


def test_a_run_with_repet_separation_trains_and_predicts(tmp_path: Path):
    import earmark
    from earmark.audio.io import load_audio
    from earmark.data.dataset import load_dataset

    data = make_class_folders(tmp_path / "data", per_class=6)
    run = earmark.train(data, tmp_path / "run", "default",
                        [*FAST, "train.epochs=1", "audio.separation=repet"], show_progress=False)
    assert json.loads((run.path / "run.json").read_text())["status"] == "complete"
    assert run.recipe().audio.separation == "repet"
    # the store keeps the separated audio: the cached stage equals separating the decoded file
    store = load_dataset(data, run.recipe(), show_progress=False).store  # the run's (cached) store
    first = store.files[0].path
    expected = separate_vocals(load_audio(first, SR), SR, "repet")
    np.testing.assert_allclose(store.waveform(0), expected, atol=1e-6)
    (res,) = earmark.Predictor(run.path).predict([first])  # prediction separates the same way
    assert res["label"] in {"tone", "knock", "hiss"}
    assert sum(res["probabilities"].values()) == pytest.approx(1, abs=1e-4)
