"""Distillation (``earmark distill RUN --out RUN2 [--model NAME]``): one fast student trained on an ensemble's
soft labels (and the true labels), fold by fold, then compared with its teacher for accuracy and speed.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RunError
from ..run import RunFolder, open_run
from ..utils.files import atomic_write_json, atomic_write_text


def _segments_per_second(run: Path, n: int = 256, repeats: int = 3) -> float:
    from ..inference.predictor import Predictor

    p = Predictor(run)
    segs = np.random.default_rng(0).standard_normal((n, p.segment_samples)).astype(np.float32) * 0.1
    p.segment_probs(segs[:8])  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        p.segment_probs(segs)
        times.append(time.perf_counter() - t0)
    return n / float(np.median(times))


def distill(run_dir: str | Path, out: str | Path, model: str | None = None, overrides: list[str] | None = None,
            show_progress: bool = True) -> RunFolder:
    """Train a single-model student of the run ``run_dir`` into ``out``; write ``distillation.{json,md}``."""
    from ..config import apply_overrides, recipe_from_dict
    from .train import train

    teacher = open_run(run_dir)
    t_recipe = teacher.recipe()
    data = RunFolder(Path(run_dir)).info().get("data") or teacher.info().get("data")
    if not data:
        raise RunError(f"{run_dir} does not record its data folder (run.json 'data')")
    settings = t_recipe.model_dump(mode="json")
    settings.update(name=f"{t_recipe.name.replace('/', '-')}-distilled", variants={})
    settings["model"]["name"] = model or t_recipe.model.name
    settings["model"]["pretrained"] = None
    settings["ensemble"].update(members=1, kind="seeds", tta=1)
    settings["distill"]["teacher"] = str(teacher.path.resolve())
    student_recipe = recipe_from_dict(apply_overrides(settings, overrides), "distillation recipe")
    student = train(data, out, student_recipe, show_progress=show_progress)
    t_metrics = teacher.metrics()
    s_metrics = student.metrics()
    # a cross-validated run predicts with every fold's model: the teacher has folds x members networks, the
    # student one per fold; the speeds below are of what `earmark predict` runs for each
    n_teacher = len(teacher.members())
    n_student = len(student.members())
    report: dict[str, Any] = {
        "teacher": {"run": str(teacher.path), "model": t_recipe.model.name, "members": n_teacher,
                    "tta": t_recipe.ensemble.tta, "track_accuracy": t_metrics["track_accuracy"],
                    "track_macro_f1": t_metrics["track_macro_f1"],
                    "segments_per_second": _segments_per_second(teacher.path)},
        "student": {"run": str(student.path), "model": student_recipe.model.name, "members": n_student,
                    "track_accuracy": s_metrics["track_accuracy"], "track_macro_f1": s_metrics["track_macro_f1"],
                    "segments_per_second": _segments_per_second(student.path)},
        "alpha": student_recipe.distill.alpha, "temperature": student_recipe.distill.temperature,
    }
    report["speedup"] = report["student"]["segments_per_second"] / report["teacher"]["segments_per_second"]
    atomic_write_json(student.file("distillation.json"), report)
    t, s = report["teacher"], report["student"]
    atomic_write_text(student.file("distillation.md"), "\n".join([
        "# Distillation", "",
        "| | model | members | track accuracy | track macro-F1 | segments/s |", "|---|---|---|---|---|---|",
        f"| teacher | {t['model']} | {t['members']} (TTA {t['tta']}) | {100 * t['track_accuracy']:.1f}% | "
        f"{100 * t['track_macro_f1']:.1f}% | {t['segments_per_second']:.0f} |",
        f"| student | {s['model']} | {s['members']} | {100 * s['track_accuracy']:.1f}% | "
        f"{100 * s['track_macro_f1']:.1f}% | "
        f"{s['segments_per_second']:.0f} |", "",
        f"The student is {report['speedup']:.1f}x faster (alpha {report['alpha']}, temperature "
        f"{report['temperature']}).", ""]))
    return student


def describe(report: dict[str, Any]) -> str:
    t, s = report["teacher"], report["student"]
    return (f"teacher {t['model']} x{t['members']}: {100 * t['track_accuracy']:.1f}% at "
            f"{t['segments_per_second']:.0f} seg/s; student {s['model']}: {100 * s['track_accuracy']:.1f}% at "
            f"{s['segments_per_second']:.0f} seg/s ({report['speedup']:.1f}x faster)")
