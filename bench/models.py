"""Each model family on ESC-10 (5 official folds): track accuracy, parameters, training time, inference speed.

    python bench/models.py                    # every family, 5 folds (hours of CPU on 2 cores)
    python bench/models.py --quick            # tiny smoke version: 4 clips per class, 2 folds, 1 epoch
    python bench/models.py --models svm,cnn5  # some of them

The same recipe for every deep model (the default: 1 s log-mel segments at 16 kHz, SpecAugment, mixup, warp,
AdamW with cosine restarts; track answer = mean of segment probabilities; ``--set`` adds overrides); the
classical models use summary statistics of the same segments. Runs are kept under bench/out/models/
(an interrupted benchmark resumes; a finished model is not retrained), and the leaderboard of
``earmark compare`` is written to docs/benchmarks/models.md (+ models.png, models.json).
Inference speed: one model scoring batches of 64 one-second segments on this CPU (median batch time).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DOCS, ROOT, SHARED, write_section  # noqa: E402

# one or more models per family: (run name, model, extra overrides)
MODELS = {
    "svm": ("svm", []),
    "logreg": ("logreg", []),
    "knn": ("knn", []),
    "gnb": ("gnb", []),
    "cnn": ("cnn", []),
    "cnn5": ("cnn5", []),
    "crnn": ("crnn", []),
    "raw1d": ("raw1d", []),
    "mobilenetv2": ("mobilenetv2", []),
    "resnet18": ("resnet18", []),
    "efficientnet_b0": ("efficientnet_b0", []),
}
QUICK_MODELS = ["svm", "logreg", "knn", "gnb", "cnn5", "crnn", "raw1d", "mobilenetv2"]

BASE = ["audio.sample_rate=16000", "segment.length_s=1.0", "segment.hop_s=0.5", "split.method=folds",
        "train.loggers=[csv]", "train.progress=false"]


def run_model(name: str, data: Path, out_root: Path, epochs: int, quick: bool, extra_sets: list[str]) -> Path:
    import earmark

    model, extra = MODELS[name]
    overrides = [*BASE, f"model.name={model}", f"train.epochs={epochs}", *extra, *extra_sets]
    if quick:
        overrides += ["data.max_files_per_class=4", "split.max_folds=2"]
    out = out_root / name
    started = time.perf_counter()
    earmark.train(data, out, "default", overrides, show_progress=False)
    print(f"[models] {name}: done in {(time.perf_counter() - started) / 60:.1f} min", flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny smoke version (not a result)")
    ap.add_argument("--models", default=None, help=f"comma-separated, from {', '.join(MODELS)}")
    ap.add_argument("--epochs", type=int, default=None, help="epochs per deep model (default 20; quick: 1)")
    ap.add_argument("--data", type=Path, default=SHARED / "esc10")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra recipe override (repeatable)")
    ap.add_argument("--out", type=Path, default=None, help="run folders (default bench/out/models[-quick])")
    args = ap.parse_args(argv)
    names = args.models.split(",") if args.models else (QUICK_MODELS if args.quick else list(MODELS))
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        ap.error(f"unknown models {unknown}; choose from {', '.join(MODELS)}")
    epochs = args.epochs or (1 if args.quick else 20)
    suffix = "-quick" if args.quick else ""
    out_root = args.out or ROOT / "bench" / "out" / f"models{suffix}"
    runs = [run_model(n, args.data, out_root, epochs, args.quick, args.sets) for n in names]

    from earmark.evaluation.compare import compare_runs, to_markdown

    rows = compare_runs(runs, out_dir=out_root, speed_batches=5)
    DOCS.mkdir(parents=True, exist_ok=True)
    png = DOCS / f"models{suffix}.png"
    shutil.copyfile(out_root / "comparison.png", png)
    best = rows[0]
    fastest = max(rows, key=lambda r: r["segments_per_s"])
    deep = [r for r in rows if r["family"] != "classical"]
    body = [
        f"ESC-10 ({'QUICK MODE: 4 clips per class, 2 folds, 1 epoch; not a result' if args.quick else '5 official folds'}"
        f"), the default recipe with `model.name` set; deep models {epochs} epoch{'s' * (epochs != 1)}"
        + (f", with {', '.join(f'`{x}`' for x in args.sets)}" if args.sets else "")
        + ". Accuracy: mean ± std over folds. Train time: all folds. "
        "Inference: segments per second of one model on this CPU (batches of 64 one-second segments, "
        "median of 5).",
        "",
        to_markdown(rows),
        f"Best track accuracy: **{best['run']}** ({100 * best['track_accuracy']:.1f}%). Fastest at inference: "
        f"**{fastest['run']}** ({fastest['segments_per_s']:.0f} segments/s"
        + (f", {fastest['segments_per_s'] / best['segments_per_s']:.1f}x the best model" if fastest is not best
           else "") + ").",
    ]
    if deep:
        small = min(deep, key=lambda r: r["parameters"] or 0)
        big = max(deep, key=lambda r: r["parameters"] or 0)
        if small is not big:
            body.append(f"Deep models span {big['parameters'] / max(small['parameters'], 1):.0f}x in size "
                        f"({small['run']} to {big['run']}).")
    body += ["", f"![track accuracy per model]({png.name})"]
    write_section(f"models{suffix}", "Model families on ESC-10", "\n".join(body),
                  {"rows": rows, "quick": args.quick, "epochs": epochs})
    print(f"[models] written {DOCS / f'models{suffix}.md'}", flush=True)


if __name__ == "__main__":
    main()
