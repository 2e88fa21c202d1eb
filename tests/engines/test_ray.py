"""Ray on a local instance (2 CPUs, started once for this module): the same store and the same run as the
local engine and the sequential run, and a worker killed mid-task is retried."""
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

import earmark
from earmark.config import AudioConfig
from earmark.data.store import prepare_store
from earmark.engines import get_engine
from earmark.engines.members import FAULTS_ENV

from ..conftest import FAST, make_class_folders, write_wav
from ..data.test_store import make_files, store_files

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory):
    """A local Ray instance for the module; its workers inherit this environment (cache, faults folder)."""
    folder = tmp_path_factory.mktemp("faults")
    saved = {k: os.environ.get(k) for k in (FAULTS_ENV, "RAY_USAGE_STATS_ENABLED")}
    os.environ[FAULTS_ENV] = str(folder)
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
             object_store_memory=80 * 1024 * 1024)
    yield folder
    ray.shutdown()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_ray_preparation_equals_the_local_store(tmp_path, faults, monkeypatch):
    monkeypatch.setattr("earmark.data.store.SHARD_FILES", 8)  # 19 files: 3 shards, on 2 workers
    files = make_files(tmp_path / "a", 17, seconds=0.6)
    (tmp_path / "a" / "bad.wav").write_bytes(b"RIFF....garbage")
    write_wav(tmp_path / "a" / "silent.wav", np.zeros(8000, np.float32), 16000)
    paths = [*files[:9], tmp_path / "a" / "bad.wav", *files[9:], tmp_path / "a" / "silent.wav"]
    audio = AudioConfig(sample_rate=16000)
    local = prepare_store(paths, audio, tmp_path / "local", workers=2, show_progress=False)
    remote = prepare_store(paths, audio, tmp_path / "ray", show_progress=False, engine=get_engine("ray"))
    assert remote.folder.name == local.folder.name
    assert sorted(store_files(remote.folder)) == ["index.json", *(f"shards/0000{k}.{s}" for k in range(3)
                                                                  for s in ("f32", "json"))]
    assert store_files(remote.folder) == store_files(local.folder)  # arrays, shard indexes and index, byte for byte
    assert remote.skipped() == local.skipped() and len(remote.skipped()) == 2
    for i in (0, 8, 10, 18):
        if remote.ok[i]:
            np.testing.assert_array_equal(remote.waveform(i), local.waveform(i))


SETS = FAST + ["train.epochs=1", "ensemble.members=2", "split.method=kfold", "split.folds=2",
               "segment.length_s=0.5", "segment.hop_s=0.5"]


def _members(run: Path) -> list[Path]:
    return sorted(p.parent for p in run.glob("folds/*/members/*/member.json"))


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if "seconds" in k:  # wall times differ
            continue
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _numbers(d: dict) -> dict:
    return {k: v for k, v in _flat(d).items() if isinstance(v, float)}


def _others(d: dict) -> dict:
    return {k: v for k, v in _flat(d).items() if not isinstance(v, float)}


def test_ray_run_equals_the_sequential_run(tmp_path, faults):
    import torch
    from safetensors.numpy import load_file

    data = make_class_folders(tmp_path / "data", per_class=4, classes=("tone", "hiss"), min_s=1.0, max_s=1.2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a Ray worker with one CPU: the same sums in the same order
    try:
        seq = earmark.train(data, tmp_path / "sequential", "default", SETS, show_progress=False).path
    finally:
        torch.set_num_threads(threads)
    par = earmark.train(data, tmp_path / "ray", "default", SETS, show_progress=False, engine="ray").path
    rel = [m.relative_to(seq) for m in _members(seq)]
    assert [str(r) for r in rel] == [f"folds/{f}/members/{k}" for f in ("fold1", "fold2") for k in (0, 1)]
    assert [m.relative_to(par) for m in _members(par)] == rel
    for r in rel:
        assert (par / r / "task.log").is_file() and not (seq / r / "task.log").exists()
        a, b = json.loads((seq / r / "member.json").read_text()), json.loads((par / r / "member.json").read_text())
        assert _numbers(a) == pytest.approx(_numbers(b), rel=1e-4, abs=1e-5), r
        assert _others(a) == _others(b), r
        wa, wb = load_file(str(seq / r / "model.safetensors")), load_file(str(par / r / "model.safetensors"))
        assert wa.keys() == wb.keys()
        for k in wa:
            np.testing.assert_allclose(wa[k], wb[k], rtol=1e-4, atol=1e-5, err_msg=f"{r}: {k}")
    for name in ("metrics.json", "folds/fold1/metrics.json", "folds/fold2/metrics.json"):
        a, b = json.loads((seq / name).read_text()), json.loads((par / name).read_text())
        for key in ("segment_accuracy", "track_accuracy", "track_macro_f1"):
            assert a[key] == pytest.approx(b[key], abs=1e-6), f"{name}: {key}"
        assert a["confusion"] == b["confusion"], name
    for name in ("test_predictions.csv", "folds/fold1/test_segments.csv"):
        assert (seq / name).read_text() == (par / name).read_text(), name  # probabilities to 5 decimals
    assert json.loads((par / "run.json").read_text())["status"] == "complete"
    assert json.loads((par / "run.json").read_text())["failures"] == []


def test_a_worker_killed_mid_task_is_retried_and_the_run_completes(tmp_path, faults):
    data = make_class_folders(tmp_path / "data", per_class=4, classes=("tone", "hiss"), min_s=1.0, max_s=1.2)
    arm = faults / "kill-holdout-1"
    arm.touch()  # the task for member 1 ends its worker process (os._exit) once, after loading the data
    out = tmp_path / "run"
    earmark.train(data, out, "default", FAST + ["train.epochs=1", "ensemble.members=2"], show_progress=False,
                  engine="ray")
    assert not arm.exists(), "the armed task never ran"
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "complete" and info["failures"] == []
    log = (out / "folds/holdout/members/1/task.log").read_text()
    assert log.count("loading the prepared dataset") == 2  # the killed attempt, then the retry
    assert len(_members(out)) == 2
    assert earmark.Predictor(out).predict([data / "tone" / "tone_00.wav"])[0]["label"] in ("tone", "hiss")
