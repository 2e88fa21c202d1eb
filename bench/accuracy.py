"""Accuracy and wall time of earmark's recipes on the development data, against an MFCC + SVM baseline.

Protocols (the same folds as the issues name):
- FSDD leave-one-speaker-out: 6 folds, grouped by ``speaker`` (speaker-independent; the hard one);
- FSDD official split: recordings 0-4 of every speaker are the test set (speaker-dependent, saturated);
- ESC-10: its 5 official folds.

    python bench/accuracy.py                      # everything (hours of CPU on 2 cores)
    python bench/accuracy.py --only fsdd-loso     # one protocol
    python bench/accuracy.py --quick              # tiny smoke version (minutes)

Runs are kept under bench/out/accuracy/ (an interrupted benchmark resumes) and the table is written to
docs/benchmarks/accuracy.md.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED, bar_chart, md_table, pct, timed_once, write_section  # noqa: E402

PROTOCOLS = {
    "fsdd-loso": dict(data=SHARED / "fsdd", group="speaker", overrides=["split.method=logo"],
                      title="FSDD, leave one speaker out (6 folds)"),
    "fsdd-official": dict(data=SHARED / "fsdd", group=None, overrides=["split.method=split"],
                          title="FSDD, official split (speaker-dependent)"),
    "esc10": dict(data=SHARED / "esc10", group=None, overrides=["split.method=folds"],
                  title="ESC-10, 5 official folds"),
}

# Systems compared on every protocol: (name, recipe, overrides)
SYSTEMS = {
    "baseline": ("default", ["model.name=svm", "features.kind=mfcc"], "MFCC statistics + RBF SVM"),
    "default": ("default", [], "default recipe (one model)"),
    # 20 epochs per member (half the default) to keep 25 trainings per protocol within a CPU budget
    "ensemble": ("default", ["train.epochs=20", "ensemble.members=5"], "default recipe, 5 seeds x 20 epochs, soft voting"),
}

# Reference numbers measured before the project started (../shared/FACTS.md), same folds.
REFERENCE = {"fsdd-loso": "MFCC+SVM 61.2% ± 20.0; plain 4-block CNN 68.6% ± 11.0",
             "fsdd-official": "MFCC+SVM 100.0%",
             "esc10": "MFCC+SVM 79.3% ± 4.4; plain 4-block CNN 85.5% ± 4.2 (1 s windows)"}


@dataclass
class Result:
    protocol: str
    system: str
    metrics: dict = field(default_factory=dict)
    wall_s: float = 0.0


def run_one(protocol: str, system: str, quick: bool, out_root: Path) -> Result:
    import earmark

    p = PROTOCOLS[protocol]
    recipe, extra, _ = SYSTEMS[system]
    overrides = list(p["overrides"]) + list(extra)
    if quick:
        overrides += ["data.max_files_per_class=8", "train.epochs=1", "split.max_folds=2"]
        overrides += ["ensemble.members=2"] if system == "ensemble" else []
    out = out_root / f"{protocol}-{system}{'-quick' if quick else ''}"
    if protocol == "esc10" and system == "ensemble":  # the very run bench/ensemble.py scores: trained once
        out = out_root.parent / "ensemble" / f"esc10-seeds{2 if quick else 5}{'-quick' if quick else ''}"
    marker = out.parent / f"{out.name}.wall.json"
    info = json.loads((out / "run.json").read_text()) if (out / "run.json").is_file() else {}
    if info.get("status") == "complete" and marker.is_file():  # finished by an earlier call: read, don't re-score
        wall = float(json.loads(marker.read_text())["wall_s"])
    else:
        _, wall = timed_once(marker, lambda: earmark.train(p["data"], out, recipe, overrides, group=p["group"],
                                                           show_progress=False))
    metrics = json.loads((out / "metrics.json").read_text())
    return Result(protocol, system, metrics, wall)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(PROTOCOLS), help="comma-separated protocols")
    ap.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated systems")
    ap.add_argument("--ensemble-on", default="esc10",
                    help="protocols on which the 'ensemble' system runs (it costs 5x the default recipe)")
    ap.add_argument("--quick", action="store_true", help="tiny smoke version")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "accuracy")
    args = ap.parse_args(argv)
    results: list[Result] = []
    for protocol in args.only.split(","):
        for system in args.systems.split(","):
            if system == "ensemble" and protocol not in args.ensemble_on.split(","):
                continue
            print(f"[accuracy] {protocol} / {system} ...", flush=True)
            r = run_one(protocol, system, args.quick, args.out)
            print(f"[accuracy] {protocol} / {system}: track accuracy {pct(r.metrics['track_accuracy'])} "
                  f"in {r.wall_s / 60:.1f} min", flush=True)
            results.append(r)
    rows = []
    for r in results:
        m = r.metrics
        folds = ", ".join(f"{100 * f['track_accuracy']:.0f}" for f in m["folds"].values())
        rows.append([PROTOCOLS[r.protocol]["title"], SYSTEMS[r.system][2],
                     pct(m["track_accuracy"], m["track_accuracy_std"]),
                     pct(m["segment_accuracy"], m["segment_accuracy_std"]), pct(m["track_macro_f1"]),
                     f"{r.wall_s / 60:.1f} min", folds])
    body = md_table(["protocol", "system", "track accuracy (mean ± std)", "segment accuracy", "track macro-F1",
                     "wall time", "per fold (%)"], rows)
    skipped = [PROTOCOLS[k]["title"] for k in args.only.split(",") if "ensemble" in args.systems.split(",")
               and k not in args.ensemble_on.split(",")]
    if skipped:
        body += ("\n\nThe 5-seed ensemble ran on " + ", ".join(PROTOCOLS[k]["title"] for k in args.ensemble_on.split(","))
                 + " only: on " + "; ".join(skipped) + " it costs five times the default recipe's wall time on this "
                 "CPU (`--ensemble-on` adds protocols). Its members train 20 epochs each; see the ensemble section.")
    refs = "\n".join(f"- {PROTOCOLS[k]['title']}: {v}" for k, v in REFERENCE.items() if k in args.only)
    body += ("\n\nWall time is the whole `earmark train` (decoding, every fold's training and scoring) on the "
             f"machine above.{' QUICK MODE: tiny subsets, 1 epoch; not a result.' if args.quick else ''}\n\n"
             f"References measured before earmark existed (../shared/FACTS.md):\n{refs}\n")
    suffix = "-quick" if args.quick else ""
    protocols = list(dict.fromkeys(r.protocol for r in results))
    systems = list(dict.fromkeys(r.system for r in results))
    got = {(r.protocol, r.system): 100 * r.metrics["track_accuracy"] for r in results}
    body += "\n" + bar_chart(f"accuracy{suffix}", protocols,
                              {SYSTEMS[s][2]: [got.get((p, s), 0.0) for p in protocols] for s in systems},
                              "track accuracy (%)", "Track accuracy per protocol (0: not run)") + "\n"
    write_section("accuracy" + suffix, "Accuracy on the development data", body,
                  {"results": [r.__dict__ for r in results], "quick": args.quick})


if __name__ == "__main__":
    main()
