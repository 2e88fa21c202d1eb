"""A leaderboard of finished runs: model, size, scores, training time and inference speed.

    >>> rows = compare_runs(["runs/svm", "runs/cnn4"], out_dir="runs/compare")
    >>> rows[0]["model"], rows[0]["track_accuracy"]

Scores and training time come from each run's ``metrics.json``; parameters from its first member (for a
classical model: the number of fitted values). Inference speed is measured on the fly: one member of
the run scores a few batches of random segments of the run's segment length on this machine
(segments per second, median batch time, after one warm-up batch; no test-time augmentation).
A run trained with ``variants`` stands for its variants, each listed as ``run/variant``.
"""
from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..audio.segment import SegmentSpec
from ..errors import RunError
from ..run import RunFolder, open_run
from ..utils.files import atomic_write_text, read_json

log = logging.getLogger(__name__)

#: leaderboard columns, in order (CSV header)
COLUMNS = ("run", "model", "family", "input", "parameters", "members", "folds", "segment_accuracy",
           "segment_accuracy_std", "track_accuracy", "track_accuracy_std", "track_macro_f1", "track_macro_f1_std",
           "train_seconds", "segments_per_s", "path")


def expand_runs(run_dirs: list[str | Path]) -> list[tuple[str, Path]]:
    """``(display name, folder)`` per run; a run of variants becomes one entry per variant."""
    out: list[tuple[str, Path]] = []
    for d in map(Path, run_dirs):
        info = read_json(d / "run.json") if (d / "run.json").is_file() else {}
        variants = info.get("variants")
        if variants and not (d / "members.json").is_file():
            out += [(f"{d.name}/{v}", d / "variants" / v) for v in variants]
        else:
            out.append((d.name, d))
    names = [n for n, _ in out]
    # the same folder name twice (runs/a/x, runs/b/x): use the parent too
    return [(f"{p.parent.name}/{n}" if names.count(n) > 1 else n, p) for n, p in out]


def inference_speed(run_dir: Path | RunFolder, batches: int = 3, batch_size: int | None = None, seed: int = 0) -> float:
    """Segments per second of the run's first member on random segments of the run's length."""
    from ..inference.members import load_member

    run = run_dir if isinstance(run_dir, RunFolder) else open_run(run_dir)
    recipe = run.recipe()
    entries = run.members()
    if not entries:
        raise RunError(f"{run_dir} has no trained members")
    member = load_member(run.path, entries[0], recipe, len(run.labels()), batch_size=recipe.eval.batch_size)
    n = batch_size or recipe.eval.batch_size
    length = SegmentSpec.from_config(recipe.segment, recipe.audio.sample_rate).length
    rng = np.random.default_rng(seed)
    waves = (0.1 * rng.standard_normal((n, length))).astype(np.float32)
    member.predict_proba(waves)  # warm-up
    times = []
    for _ in range(max(1, batches)):
        started = time.perf_counter()
        member.predict_proba(waves)
        times.append(time.perf_counter() - started)
    return float(n / max(np.median(times), 1e-9))


def run_row(name: str, run_dir: Path, speed_batches: int = 3) -> dict[str, Any]:
    """One leaderboard row for a finished run."""
    from ..models.registry import get_spec

    run = open_run(run_dir)
    recipe = run.recipe()
    m = run.metrics()
    entries = run.members()
    first = read_json(run.path / entries[0].dir / "member.json") if entries else {}
    model = first.get("model") or recipe.model.name
    try:
        spec = get_spec(model)
        family, kind = spec.family, spec.input
    except Exception:  # noqa: BLE001 - a model this installation does not know
        family, kind = "?", "?"  # type: ignore[assignment]
    row: dict[str, Any] = {
        "run": name, "model": model, "family": family, "input": kind, "parameters": first.get("parameters"),
        "members": len(entries), "folds": m.get("n_folds"), "train_seconds": m.get("train_seconds"),
        "path": str(run.path),
    }
    for key in ("segment_accuracy", "track_accuracy", "track_macro_f1"):
        row[key], row[f"{key}_std"] = m.get(key), m.get(f"{key}_std", 0.0)
    row["segments_per_s"] = inference_speed(run, speed_batches) if speed_batches > 0 else None
    return row


def _pm(row: dict[str, Any], key: str) -> str:
    v, s = row.get(key), row.get(f"{key}_std")
    if v is None:
        return "-"
    return f"{100 * v:.1f} ± {100 * s:.1f}" if s and (row.get("folds") or 1) > 1 else f"{100 * v:.1f}"


def _params(n: Any) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n / 1e3:.1f} k" if n >= 1e3 else str(n)


def _seconds(s: Any) -> str:
    if s is None:
        return "-"
    return f"{s / 60:.1f} min" if s >= 120 else f"{s:.1f} s"


def table_cells(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and formatted cells of the leaderboard (accuracies in %)."""
    header = ["run", "model", "family", "parameters", "segment acc. %", "track acc. %", "track macro-F1 %",
              "train time", "segments/s"]
    cells = [[r["run"], r["model"], r["family"], _params(r["parameters"]), _pm(r, "segment_accuracy"),
              _pm(r, "track_accuracy"), _pm(r, "track_macro_f1"), _seconds(r["train_seconds"]),
              "-" if r["segments_per_s"] is None else f"{r['segments_per_s']:.0f}"] for r in rows]
    return header, cells


def to_markdown(rows: list[dict[str, Any]]) -> str:
    header, cells = table_cells(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c) + " |" for c in cells]
    return "\n".join(lines) + "\n"


def to_text(rows: list[dict[str, Any]]) -> str:
    """The leaderboard as aligned plain text (for a terminal)."""
    header, cells = table_cells(rows)
    widths = [max(len(x) for x in col) for col in zip(header, *cells)]
    fmt = (lambda row: "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *map(fmt, cells)]) + "\n"


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def compare_runs(run_dirs: Sequence[str | Path], out_dir: str | Path | None = None, speed_batches: int = 3
                 ) -> list[dict[str, Any]]:
    """Leaderboard rows (best track accuracy first); with ``out_dir``, also writes
    ``comparison.md``, ``comparison.csv`` and ``comparison.png`` (track accuracy, bars with std) there.

    ``speed_batches=0`` skips the speed measurement.
    """
    from .plots import plot_bars

    if not run_dirs:
        raise RunError("nothing to compare: give one or more finished run folders")
    rows = [run_row(name, path, speed_batches) for name, path in expand_runs(list(run_dirs))]
    rows.sort(key=lambda r: -(r["track_accuracy"] if r["track_accuracy"] is not None else -1.0))
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "comparison.md", to_markdown(rows))
        atomic_write_text(out / "comparison.csv", to_csv(rows))
        plot_bars([f"{r['run']} ({r['model']})" if r["run"] != r["model"] else r["run"] for r in rows],
                  [100 * (r["track_accuracy"] or 0.0) for r in rows], out / "comparison.png",
                  "Track accuracy", "track accuracy (%)",
                  errors=[100 * (r["track_accuracy_std"] or 0.0) for r in rows])
    return rows
