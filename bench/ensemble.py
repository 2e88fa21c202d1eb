"""Ensembles on ESC-10 (5 official folds): one model, a 5-member ensemble (soft and hard voting), with
test-time augmentation, and the ensemble distilled into one model; accuracy and inference time.

One 5-member seeds ensemble is trained; "one model" is its first member scored alone (same training, no
extra run), the voting variants come from the members' saved test predictions, TTA re-scores the test
segments, and the student is trained by `earmark distill` on the same folds.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DOCS, ROOT, SHARED, bar_chart, md_table, pct, timed_once, write_section  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--tta", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=20, help="epochs per member and for the student")
    ap.add_argument("--student", default="cnn5", help="student model for the distillation row")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "ensemble")
    args = ap.parse_args(argv)
    import earmark
    from earmark.data.loader import SegmentTable
    from earmark.ensemble import vote
    from earmark.evaluation.aggregate import aggregate_by_track
    from earmark.inference.members import load_member
    from earmark.data.dataset import load_dataset
    from earmark.inference.members import member_segment_probs
    from earmark.jobs.distill import distill
    from earmark.utils.files import read_json

    quick = ["data.max_files_per_class=8", "train.epochs=1", "split.max_folds=2"] if args.quick else []
    members = 2 if args.quick else args.members
    suffix = "-quick" if args.quick else ""
    ens_dir = args.out / f"esc10-seeds{members}{suffix}"
    # the same run (same settings, same folder) as the "ensemble" system of bench/accuracy.py on ESC-10
    epochs = [] if args.quick else [f"train.epochs={args.epochs}"]
    run, ens_wall = timed_once(ens_dir.parent / f"{ens_dir.name}.wall.json", lambda: earmark.train(
        SHARED / "esc10", ens_dir, "default", ["split.method=folds"] + quick + epochs + [f"ensemble.members={members}"],
        show_progress=False))
    recipe = run.recipe()
    ds = load_dataset(SHARED / "esc10", recipe, labels=run.labels(), show_progress=False)
    entries = read_json(run.file("members.json"))["members"]
    folds = read_json(run.file("run.json"))["folds"]
    acc: dict[str, list[float]] = {k: [] for k in ("single", "soft", "hard", "soft+tta")}

    def track_acc(seg_probs: np.ndarray, files: np.ndarray) -> float:
        tracks, probs = aggregate_by_track(seg_probs, files, recipe.eval.aggregate)
        return float(np.mean(probs.argmax(1) == ds.label_index[tracks]))

    tta_recipe = recipe.model_copy(update={"ensemble": recipe.ensemble.model_copy(update={"tta": args.tta})})
    for fold in folds:
        d = run.path / "folds" / fold
        probs, files = np.load(d / "test_member_probs.npy"), np.load(d / "test_segment_files.npy")
        acc["single"].append(track_acc(probs[0], files))
        acc["soft"].append(track_acc(vote(probs, "soft"), files))
        acc["hard"].append(track_acc(vote(probs, "hard"), files))
        fold_members = [load_member(run.path, e, recipe, len(ds.labels)) for e in entries if e["fold"] == fold]
        table = SegmentTable.build(ds.store, np.unique(files), recipe.segment, recipe.audio.sample_rate)
        tta_probs = vote(member_segment_probs(fold_members, ds, table, tta_recipe), "soft")
        acc["soft+tta"].append(track_acc(tta_probs, table.files))
    student_dir = args.out / f"esc10-student-{args.student}{suffix}"
    student, student_wall = timed_once(student_dir.parent / f"{student_dir.name}.wall.json", lambda: distill(
        run.path, student_dir, model=args.student, overrides=quick[1:2] if args.quick else epochs,
        show_progress=False))
    s_metrics = read_json(student.file("metrics.json"))
    report = read_json(student.file("distillation.json"))
    # inference speed: segments/s of one member, the ensemble, the ensemble with TTA, the student
    p_single = earmark.Predictor(run.path)
    segs = np.random.default_rng(0).standard_normal((256, p_single.segment_samples)).astype(np.float32) * 0.1

    def speed(predict) -> float:  # noqa: ANN001
        predict(segs[:8])
        times = []
        for _ in range(3):
            t = time.perf_counter()
            predict(segs)
            times.append(time.perf_counter() - t)
        return len(segs) / float(np.median(times))

    one = load_member(run.path, entries[0], recipe, len(ds.labels))
    fold0 = [load_member(run.path, e, recipe, len(ds.labels)) for e in entries if e["fold"] == folds[0]]
    from earmark.ensemble import with_tta

    speeds = {
        "single": speed(one.predict_proba),
        "soft": speed(lambda w: vote([m.predict_proba(w) for m in fold0], "soft")),
        "hard": speed(lambda w: vote([m.predict_proba(w) for m in fold0], "hard")),
        "soft+tta": speed(lambda w: vote([with_tta(m.predict_proba, w, args.tta, 0.1) for m in fold0], "soft")),
        "student": speed(load_member(student.path, read_json(student.file("members.json"))["members"][0],
                                     student.recipe(), len(ds.labels)).predict_proba),
    }
    n = len(fold0)
    rows = [
        [f"one model ({recipe.model.name}, member 0)", pct(np.mean(acc["single"]), np.std(acc["single"])),
         f"{speeds['single']:.0f}"],
        [f"{n}-member ensemble, soft voting", pct(np.mean(acc["soft"]), np.std(acc["soft"])), f"{speeds['soft']:.0f}"],
        [f"{n}-member ensemble, hard voting", pct(np.mean(acc["hard"]), np.std(acc["hard"])), f"{speeds['hard']:.0f}"],
        [f"{n}-member ensemble, soft voting + TTA x{args.tta}", pct(np.mean(acc["soft+tta"]), np.std(acc["soft+tta"])),
         f"{speeds['soft+tta']:.0f}"],
        [f"distilled student ({args.student})", pct(s_metrics["track_accuracy"], s_metrics["track_accuracy_std"]),
         f"{speeds['student']:.0f}"],
    ]
    body = md_table(["system", "track accuracy (mean ± std over folds)", "inference segments/s"], rows)
    body += (f"\n\nESC-10, {len(folds)} official folds, default recipe"
             f"{'' if args.quick else f' with {args.epochs} epochs per model (members and student)'}. Training: the ensemble took "
             f"{ens_wall / 60:.1f} min, the student {student_wall / 60:.1f} min. Inference: 256 one-second "
             "segments, one core pair, median of 3; the ensembles are one fold's members, the student one fold's "
             "model (predicting on new files averages the 5 fold models of a cross-validated run, 5x the cost).")
    body += " QUICK MODE: tiny subsets, 1 epoch; not a result.\n" if args.quick else "\n"
    if (run.path / "ensemble_size.md").is_file():
        body += "\n" + "\n".join((run.path / "ensemble_size.md").read_text().splitlines()[2:]) + "\n"
    body += "\n" + bar_chart(f"ensemble{suffix}", ["one model", "soft", "hard", f"soft+TTA{args.tta}", "student"],
                              {"track accuracy (%)": [100 * float(np.mean(acc[k])) for k in ("single", "soft", "hard",
                                                                                         "soft+tta")]
                               + [100 * s_metrics["track_accuracy"]]},
                              "track accuracy (%)", "ESC-10: one model, ensembles, student") + "\n"
    if (run.path / "ensemble_size.png").is_file():
        import shutil

        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run.path / "ensemble_size.png", DOCS / f"ensemble_size{suffix}.png")
        body += f"\n![accuracy against ensemble size](ensemble_size{suffix}.png)\n"
    write_section("ensemble" + suffix, "Ensembles, test-time augmentation and distillation", body,
                  {"accuracy": acc, "speeds": speeds, "student": s_metrics.get("track_accuracy"),
                   "ensemble_wall_s": ens_wall, "student_wall_s": student_wall})
    print(json.dumps({k: float(np.mean(v)) for k, v in acc.items()}), flush=True)


if __name__ == "__main__":
    main()
