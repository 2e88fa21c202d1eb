"""The engine interface without Ray: retries, failure reports, and the message when Ray is missing."""
import json
import sys

import pytest

import earmark
from earmark.engines import LocalEngine, get_engine
from earmark.errors import ConfigError, RunError

from ..conftest import FAST, make_class_folders


def test_local_engine_retries_once_then_reports_and_the_others_finish():
    calls: dict[int, int] = {}

    def task(x: int) -> int:
        calls[x] = calls.get(x, 0) + 1
        if x == 1 and calls[x] == 1:
            raise OSError("flaky disk")  # fails once: the retry succeeds
        if x == 2:
            raise ValueError(f"bad input {x}")  # fails every time
        return 10 * x

    outcomes = LocalEngine().map(task, [(0,), (1,), (2,), (3,)], show=False)
    assert [o.value for o in outcomes] == [0, 10, None, 30]
    assert calls == {0: 1, 1: 2, 2: 2, 3: 1}
    assert [o.ok for o in outcomes] == [True, True, False, True]
    assert outcomes[2].error == "ValueError: bad input 2"


def test_a_config_error_stops_the_map_at_once():
    seen = []

    def task(x: int) -> None:
        seen.append(x)
        raise ConfigError("separation=demucs needs demucs")

    with pytest.raises(ConfigError, match="demucs"):
        LocalEngine().map(task, [(0,), (1,)], show=False)
    assert seen == [0]


def test_engine_ray_without_ray_installed_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'earmark\[ray\]'"):
        get_engine("ray")
    with pytest.raises(ConfigError, match="--engine ray"):
        get_engine("local", "10.0.0.1:6379")
    with pytest.raises(ConfigError, match="unknown engine 'spark'"):
        get_engine("spark")


def test_cli_engine_ray_without_ray_is_a_one_line_error(tmp_path):
    data = make_class_folders(tmp_path / "data", per_class=2, classes=("tone", "hiss"), min_s=0.5, max_s=0.6)
    code = ("import sys; sys.modules['ray'] = None; from earmark.cli import main; sys.argv = ['earmark', 'prepare', "
            f"{str(data)!r}, '--engine', 'ray']; main()")
    import subprocess

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: --engine ray needs Ray, which is not installed: pip install 'earmark[ray]'")


def test_failed_member_is_reported_and_the_run_resumes(tmp_path, monkeypatch):
    data = make_class_folders(tmp_path / "data", per_class=4, classes=("tone", "hiss"), min_s=1.0, max_s=1.2)
    out = tmp_path / "run"
    sets = FAST + ["train.epochs=1", "ensemble.members=2"]
    from earmark.training import members

    real = members.fit_planned_member

    def broken_for_member_1(plan, ds, fold, folder):
        if plan.index == 1:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return real(plan, ds, fold, folder)

    monkeypatch.setattr(members, "fit_planned_member", broken_for_member_1)
    with pytest.raises(RunError, match=r"(?s)1 of 2 member\(s\) failed twice:\n  fold holdout member 1: RuntimeError: "
                                       r"CUDA error.*Run the same command again"):
        earmark.train(data, out, "default", sets, show_progress=False, engine="local")
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "running"
    assert info["failures"] == [{"fold": "holdout", "member": 1,
                                 "error": "RuntimeError: CUDA error: an illegal memory access was encountered"}]
    report = (out / "report.md").read_text()
    assert "1 of 2 members failed" in report and "| holdout | 1 | RuntimeError: CUDA error" in report
    assert (out / "folds/holdout/members/0/member.json").is_file()
    assert not (out / "folds/holdout/members/1/member.json").exists()
    assert report.count("\n") > 3 and "task failed" in (out / "folds/holdout/members/1/task.log").read_text()
    before = (out / "folds/holdout/members/0/model.safetensors").stat().st_mtime_ns

    monkeypatch.setattr(members, "fit_planned_member", real)
    earmark.train(data, out, "default", sets, show_progress=False, engine="local")  # the same command again
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "complete" and info["failures"] == []
    assert (out / "folds/holdout/members/0/model.safetensors").stat().st_mtime_ns == before  # not retrained
    assert "members failed" not in (out / "report.md").read_text()
    assert earmark.Predictor(out).predict([data / "tone" / "tone_00.wav"])[0]["label"] in ("tone", "hiss")


def test_an_address_where_no_cluster_answers_fails_fast():
    import socket

    from earmark.engines.ray_engine import check_reachable

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConfigError,
                       match=rf"--address 127.0.0.1:{port}: no Ray cluster answers there .*ray start --head"):
        check_reachable(f"127.0.0.1:{port}", timeout_s=2)
    check_reachable("auto")  # left to Ray
