"""Helpers shared by the benchmark scripts: timing, machine description, writing result sections.

Every script writes one markdown section (and its PNGs) to docs/benchmarks/; bench/run.py runs them and
assembles docs/BENCHMARKS.md. Numbers are medians of several runs; comparisons are measured in one run.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks"
SHARED = Path(os.environ.get("EARMARK_SHARED_DATA") or ROOT.parent / "shared" / "data")


def median_time(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def machine() -> str:
    """One line describing where the numbers were measured."""
    import torch

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"{gpu}, Python {platform.python_version()}")


def git_revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_section(name: str, title: str, body: str, data: dict[str, Any] | None = None) -> Path:
    """Write docs/benchmarks/<name>.md (and <name>.json with the raw numbers)."""
    DOCS.mkdir(parents=True, exist_ok=True)
    header = (f"## {title}\n\n_Measured {time.strftime('%Y-%m-%d')} at commit {git_revision()} on "
              f"{machine()}._\n\n")
    path = DOCS / f"{name}.md"
    path.write_text(header + body.strip() + "\n")
    if data is not None:
        (DOCS / f"{name}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def pct(mean: float, std: float | None = None) -> str:
    return f"{100 * mean:.1f}%" + (f" ± {100 * std:.1f}" if std is not None else "")
