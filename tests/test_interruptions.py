"""An ensemble run killed with SIGKILL at a random point resumes: finished members are never retrained.

(Preparation killed mid-way: tests/data/test_store.py; one member killed mid-fit: tests/test_pipeline.py.)
"""
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import earmark
from earmark.errors import RunError

from .conftest import FAST, make_class_folders


def _snapshot(member: Path) -> dict[str, tuple[int, bytes]]:
    return {name: ((member / name).stat().st_mtime_ns, (member / name).read_bytes())
            for name in ("member.json", "model.safetensors", "fit.json")}


def test_killed_ensemble_trains_only_the_unfinished_members(tmp_path: Path, caplog):
    data = make_class_folders(tmp_path / "data", per_class=4, classes=("tone", "hiss"), min_s=1.0, max_s=1.3)
    out = tmp_path / "ensemble run"
    sets = FAST + ["train.epochs=2", "ensemble.members=3"]
    cmd = [sys.executable, "-m", "earmark.cli", "train", str(data), "--out", str(out)]
    for s in sets:
        cmd += ["--set", s]
    seed = int.from_bytes(os.urandom(4), "little")
    rng = np.random.default_rng(seed)
    target, fraction = int(rng.integers(1, 3)), float(rng.uniform(0.0, 0.5))
    members = out / "folds" / "holdout" / "members"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: dict[str, float] = {}
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None and f"{target}" not in seen:
            for k in range(target + 1):
                if f"{k}" not in seen and (members / f"{k}").is_dir():
                    seen[f"{k}"] = time.time()
                if f"{k}.done" not in seen and (members / f"{k}" / "member.json").is_file():
                    seen[f"{k}.done"] = time.time()
            time.sleep(0.01)
        # a random point in member `target`'s training: up to half as long as the member before it took
        took = seen.get(f"{target - 1}.done", time.time()) - seen.get(f"{target - 1}", time.time())
        time.sleep(fraction * took)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    delay = fraction * took
    finished = sorted(int(p.parent.name) for p in members.glob("*/member.json"))
    context = f"(seed {seed}: killed {delay:.2f} s into member {target}; finished then: {finished})"
    assert finished and finished[0] == 0, f"member 0 never finished {context}"
    assert len(finished) < 3 and json.loads((out / "run.json").read_text())["status"] == "running", \
        f"the run finished before it was killed {context}"
    with pytest.raises(RunError):
        earmark.Predictor(out)  # a half-written run is never taken for a finished one
    before = {k: _snapshot(members / str(k)) for k in finished}

    caplog.set_level(logging.INFO, logger="earmark")
    earmark.train(data, out, "default", sets, show_progress=False)  # the same command again
    trained = sorted(int(m) for m in re.findall(r"fold holdout: training member (\d+)", caplog.text))
    assert trained == sorted({0, 1, 2} - set(finished)), context
    for k in finished:
        assert _snapshot(members / str(k)) == before[k], f"member {k} was touched {context}"
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    entries = json.loads((out / "members.json").read_text())["members"]
    assert [e["dir"] for e in entries] == [f"folds/holdout/members/{k}" for k in range(3)]
    assert {e["seed"] for e in entries} == {0, 1000, 2000}
    assert earmark.Predictor(out).predict([data / "tone" / "tone_00.wav"])[0]["label"] in ("tone", "hiss")
