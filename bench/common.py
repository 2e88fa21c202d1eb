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


def bar_chart(name: str, groups: list[str], series: dict[str, list[float]], ylabel: str, title: str = "",
              log: bool = False) -> str:
    """Save a grouped bar chart as docs/benchmarks/<name>.png; return the markdown line that shows it.

    ``groups`` label the x axis; each entry of ``series`` is one bar per group (same order).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    DOCS.mkdir(parents=True, exist_ok=True)
    x = np.arange(len(groups))
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(groups) * max(1, len(series)) ** 0.5 + 2), 3.6))
    for i, (label, values) in enumerate(series.items()):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=label)
    ax.set_xticks(x, groups, rotation=20 if max(map(len, groups)) > 8 else 0, ha="right" if max(map(len, groups)) > 8 else "center")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    if len(series) > 1:
        ax.legend(frameon=False, fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(DOCS / f"{name}.png", dpi=110)
    plt.close(fig)
    return f"![{title or name}]({name}.png)"


def timed_once(marker: Path, fn: Callable[[], Any]) -> tuple[Any, float]:
    """``(fn(), seconds)``, where seconds is the wall time of the call that first did the work.

    Benchmarks reuse finished runs (training again only re-scores them): the first call's time is kept in
    ``marker`` (a small JSON file beside the run) and reported on later calls instead of the re-scoring time.
    """
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    if marker.is_file():
        return result, float(json.loads(marker.read_text())["wall_s"])
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"wall_s": seconds}) + "\n")
    return result, seconds
