"""Pretrained AudioSet models against training from scratch, on the development data.

Systems: the linear probe (recipe ``pretrained-probe``: frozen mn04_as embeddings + logistic regression, or an
MLP head), fine-tuning mn04_as (recipe ``pretrained``), a zero-shot run (the head started from each class's
AudioSet label, ``train.epochs=0``) where AudioSet names the classes, and the scratch default recipe: trained
here with ``--systems ...,scratch`` (or ``protocol:scratch``), else read from the accuracy benchmark
(docs/benchmarks/accuracy.json, same folds).

Protocols:
- FSDD leave-one-speaker-out (6 folds, ``--group speaker``, ``split.method=logo``);
- ESC-10, its 5 official folds;
- MIR-1K singer gender, leave-one-singer-out (6 folds, ``--group singer``; the stereo files are mixed down to
  mono: accompaniment + voice, the song as a listener hears it).

    python bench/pretrained.py                 # the table in docs (about an hour on 2 idle cores)
    python bench/pretrained.py --systems probe,probe_mlp     # probe rows only (minutes)
    python bench/pretrained.py --systems probe,finetune --only esc10
    python bench/pretrained.py --quick         # tiny smoke version

Runs are kept under bench/out/pretrained/ (an interrupted benchmark resumes; a finished run is read, not
re-scored); the table goes to docs/benchmarks/pretrained.md. Needs the mn04_as weights in
``$EARMARK_WEIGHTS`` (or a network connection to download them once).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DOCS, ROOT, SHARED, md_table, pct, timed_once, write_section  # noqa: E402

PROTOCOLS: dict[str, dict[str, Any]] = {
    "fsdd-loso": dict(data=SHARED / "fsdd", group="speaker", overrides=["split.method=logo"],
                      title="FSDD, leave one speaker out (6 folds)",
                      # digits last 0.44 s on average: 1 s windows, a short clip looped rather than padded
                      probe=["segment.length_s=1.0", "segment.hop_s=0.5"]),
    "esc10": dict(data=SHARED / "esc10", group=None, overrides=["split.method=folds"],
                  title="ESC-10, 5 official folds", probe=[],
                  labels={"dog": "Dog", "rooster": "Chicken, rooster", "rain": "Rain", "sea_waves": "Waves, surf",
                          "crackling_fire": "Fire", "crying_baby": "Baby cry, infant cry", "sneezing": "Sneeze",
                          "clock_tick": "Tick-tock", "helicopter": "Helicopter", "chainsaw": "Chainsaw"}),
    "mir1k-gender": dict(data=SHARED / "mir1k", group="singer", overrides=["split.method=logo"],
                         title="MIR-1K singer gender, leave one singer out (6 folds)", probe=[],
                         labels={"female": "Female singing", "male": "Male singing"}),
}

SYSTEMS = {
    "probe": ("pretrained-probe", [], "linear probe: frozen mn04_as + logistic regression"),
    "probe_mlp": ("pretrained-probe", ["model.name=probe_mlp"], "probe with an MLP head (probe_mlp)"),
    "probe_repet": ("pretrained-probe", ["model.name=probe_mlp", "audio.separation=repet"],
                    "probe_mlp on REPET-separated vocals"),
    "finetune": ("pretrained", [], "fine-tuned mn04_as (recipe pretrained, 10 epochs)"),
    "scratch": ("default", [], "scratch default recipe (trained in this run)"),
    # no training: the head starts from the AudioSet rows of each class's label (model.head_labels); 10 s windows,
    # the length the network was trained on (a shorter clip looped)
    "zeroshot": ("pretrained", ["train.epochs=0", "segment.length_s=10", "segment.hop_s=5", "segment.short=repeat"],
                 "zero-shot mn04_as: each class's AudioSet label, no training"),
}
SCRATCH = "scratch default recipe (one model; from the accuracy benchmark)"


def run_one(protocol: str, system: str, quick: bool, out_root: Path, max_folds: int | None = None
            ) -> dict[str, Any]:
    import earmark

    p = PROTOCOLS[protocol]
    recipe, extra, _ = SYSTEMS[system]
    overrides = list(p["overrides"]) + list(extra) + (list(p["probe"]) if system in ("probe", "finetune") else [])
    if system == "zeroshot":
        overrides.append("model.head_labels={" + ", ".join(f"{k}: '{v}'" for k, v in p["labels"].items()) + "}")
    if quick:
        overrides += ["data.max_files_per_class=6", "split.max_folds=2", "train.epochs=1"]
    elif max_folds:
        overrides += [f"split.max_folds={max_folds}"]
    # a store of this benchmark's own, so that the first row of a protocol pays for decoding (and embedding)
    overrides += [f"data.cache_dir={out_root / 'cache'}"]
    out = out_root / f"{protocol}-{system}{f'-{max_folds}folds' if max_folds else ''}{'-quick' if quick else ''}"
    marker = out.parent / f"{out.name}.wall.json"
    info = json.loads((out / "run.json").read_text()) if (out / "run.json").is_file() else {}
    if info.get("status") == "complete" and marker.is_file():
        wall = float(json.loads(marker.read_text())["wall_s"])
    else:
        _, wall = timed_once(marker, lambda: earmark.train(p["data"], out, recipe, overrides, group=p["group"],
                                                           show_progress=False))
    metrics = json.loads((out / "metrics.json").read_text())
    return {"protocol": protocol, "system": system, "metrics": metrics, "wall_s": wall,
            "overrides": overrides, "max_folds": max_folds}


def scratch_rows() -> dict[str, dict[str, Any]]:
    """The scratch default recipe's results from the accuracy benchmark (same protocols), by protocol."""
    path = DOCS / "accuracy.json"
    if not path.is_file():
        return {}
    return {r["protocol"]: r for r in json.loads(path.read_text())["results"] if r["system"] == "default"}


def pooled(m: dict[str, Any]) -> str:
    """Accuracy over all test files of all folds (from the summed confusion matrix)."""
    c = m["confusion"]
    return pct(sum(c[i][i] for i in range(len(c))) / max(1, sum(map(sum, c))))


def row(title: str, system: str, m: dict[str, Any], wall_s: float, max_folds: int | None = None) -> list[Any]:
    folds = ", ".join(f"{100 * f['track_accuracy']:.0f}" for f in m["folds"].values())
    system += f" (first {max_folds} fold{'s' * (max_folds > 1)} only)" if max_folds else ""
    return [title, system, pct(m["track_accuracy"], m["track_accuracy_std"]), pooled(m),
            pct(m["track_macro_f1"]),
            f"{wall_s / 60:.1f} min", folds]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(PROTOCOLS), help="comma-separated protocols")
    ap.add_argument("--systems", default="probe,probe_mlp,finetune,zeroshot,mir1k-gender:scratch",
                    help=f"comma-separated, of {', '.join(SYSTEMS)}; a protocol:system pair runs that system on "
                         "that protocol only (e.g. mir1k-gender:probe_repet)")
    ap.add_argument("--finetune-folds", type=int, default=None,
                    help="fine-tuning runs only the first N folds (a CPU budget)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--quick", action="store_true", help="tiny smoke version")
    ap.add_argument("--note", action="append", default=[], help="a line added under the table (repeatable)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "pretrained")
    args = ap.parse_args(argv)
    os.environ.setdefault("EARMARK_WEIGHTS", str(SHARED.parent / "weights"))
    import torch

    from earmark.config import recipe_names

    if args.threads:
        torch.set_num_threads(args.threads)
    results, notes = [], []
    for protocol in args.only.split(","):
        for entry in args.systems.split(","):
            only, _, system = entry.rpartition(":")
            if only and only != protocol:
                continue
            if system == "zeroshot" and "labels" not in PROTOCOLS[protocol]:
                notes.append(f"{PROTOCOLS[protocol]['title']}: no zero-shot row (no AudioSet label names its classes)")
                continue
            if SYSTEMS[system][0] not in recipe_names():
                notes.append(f"{SYSTEMS[system][2]}: not run (no recipe {SYSTEMS[system][0]!r} in this version)")
                continue
            print(f"[pretrained] {protocol} / {system} ...", flush=True)
            r = run_one(protocol, system, args.quick, args.out,
                        args.finetune_folds if system == "finetune" else None)
            print(f"[pretrained] {protocol} / {system}: track accuracy {pct(r['metrics']['track_accuracy'])}, "
                  f"macro-F1 {pct(r['metrics']['track_macro_f1'])} in {r['wall_s'] / 60:.1f} min", flush=True)
            results.append(r)
    scratch = scratch_rows()
    rows = []
    for protocol in args.only.split(","):
        title = PROTOCOLS[protocol]["title"]
        if any(r["protocol"] == protocol and r["system"] == "scratch" for r in results):
            pass  # trained in this run: its row follows
        elif protocol in scratch:
            rows.append(row(title, SCRATCH, scratch[protocol]["metrics"], scratch[protocol]["wall_s"]))
        else:
            rows.append([title, "scratch default recipe", "not run", "", "", "", ""])
        rows += [row(title, SYSTEMS[r["system"]][2], r["metrics"], r["wall_s"], r.get("max_folds"))
                 for r in results if r["protocol"] == protocol]
    body = md_table(["protocol", "system", "track accuracy (mean ± std over folds)", "pooled accuracy",
                     "track macro-F1 (mean over folds)", "wall time", "per fold (%)"], rows)
    body += (
        "\n\nWall time is the whole `earmark train` (decoding at 32 kHz, embedding every segment once, every fold's "
        "fit and scoring) on the machine above"
        + (f", torch limited to {args.threads} thread(s)" if args.threads else "")
        + ". Every run keeps its prepared store in this benchmark's own cache, so a protocol's first row pays for "
        "decoding and the rows after it reuse the store (and the probes the embeddings the first probe cached). "
        "Scratch rows not trained in this run are the accuracy benchmark's runs of the default recipe on the same "
        "folds (docs/benchmarks/accuracy.json; the default recipe was re-measured at full length since, "
        "docs/default-recipe.md). Pooled accuracy counts every test file of every fold once; with "
        "leave-one-singer-out each MIR-1K test fold holds one singer, so one class, and its per-fold macro-F1 is "
        "not meaningful: read the pooled accuracy there."
        "\n\nSettings. Probe: recipe `pretrained-probe` (3 s windows, hop 1.5 s, short clips looped, track = mean of "
        "window probabilities). Fine-tuning: recipe `pretrained` (10 epochs, 2 s windows, hop 1 s, Adam 1e-4 with "
        "the new head at 10x, mixup 0.3, gain ±12 dB, time roll). Zero-shot: recipe `pretrained` with "
        "`train.epochs=0`, 10 s windows every 5 s (a shorter clip looped) and `model.head_labels` naming each "
        "class's AudioSet label ("
        + "; ".join(f"{PROTOCOLS[k]['title'].split(',')[0]}: "
                    + ", ".join(f"{c} -> '{v}'" for c, v in PROTOCOLS[k]["labels"].items())
                    for k in args.only.split(",") if "labels" in PROTOCOLS[k])
        + "): nothing is trained, "
        "so its folds differ only in the files scored."
        + "".join(f" {PROTOCOLS[k]['title']}: `{' '.join(PROTOCOLS[k]['probe'])}` for the probe and fine-tuning."
                  for k in args.only.split(",") if PROTOCOLS[k]["probe"]) + "\n")
    notes += args.note
    if notes:
        body += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    if args.quick:
        body += "\nQUICK MODE: tiny subsets; not a result.\n"
    suffix = "-quick" if args.quick else ""
    write_section("pretrained" + suffix, "Pretrained AudioSet models against training from scratch", body,
                  {"results": results, "threads": args.threads, "quick": args.quick})


if __name__ == "__main__":
    main()
