"""Loudness robustness: does the answer change when the same clip is quieter?

Trains the default recipe (fewer epochs, the same for every alternative) with each front-end alternative
on ESC-10 (its first 2 official folds) and FSDD (leave one speaker out, the first 2 speakers), then scores
every run's test folds with the test segments' waveforms (read from the prepared store, not re-decoded)
scaled by 0, -20 and -40 dB: track accuracy, and the share of test clips whose answer differs from the
answer at 0 dB.

    python bench/loudness.py                   # every alternative (~30 min on 2 idle cores)
    python bench/loudness.py --only current,relative-floor+segment-mean
    python bench/loudness.py --quick           # tiny smoke version (minutes)
    python bench/loudness.py --pretrained      # only the EfficientAT tagger (released weights) check

Runs are kept under bench/out/loudness/ (an interrupted benchmark resumes, finished runs are only
re-scored); results go to bench/out/loudness/results.json after every run and the table to
docs/benchmarks/loudness.md.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED, md_table, timed_once, write_section

EPOCHS = 6
GAINS_DB = (0.0, -20.0, -40.0)

PROTOCOLS = {
    "esc10": {"data": SHARED / "esc10", "group": None, "title": "ESC-10, official folds 1-2",
              "overrides": ["split.method=folds", "split.max_folds=2"]},
    "fsdd-loso": {"data": SHARED / "fsdd", "group": "speaker", "title": "FSDD, leave one speaker out (2 speakers)",
                  "overrides": ["split.method=logo", "split.max_folds=2"]},
}

# Every alternative states all the loudness settings, so it means the same whatever the defaults are.
_OLD_FLOOR = ["features.log_floor=1e-6", "features.log_floor_db=null"]
_LOW_FLOOR = ["features.log_floor=1e-10", "features.log_floor_db=null"]
_REL_FLOOR = ["features.log_floor=1e-6", "features.log_floor_db=80"]
_GAIN6 = ["augment.gain.min_db=-6", "augment.gain.max_db=6"]
_GAIN30 = ["augment.gain.min_db=-30", "augment.gain.max_db=30"]
_NO_MEAN, _MEAN = ["features.segment_norm=none"], ["features.segment_norm=mean"]
_MAX = ["features.segment_norm=max"]

# name: (overrides, description); in order of interest, so a partial benchmark answers the main question
ALTERNATIVES: dict[str, tuple[list[str], str]] = {
    "current": (_OLD_FLOOR + _NO_MEAN + _GAIN6, "floor 1e-6, gain ±6 dB (the front-end before this change)"),
    "relative-floor+segment-mean": (_REL_FLOOR + _MEAN + _GAIN6,
                                    "floor at segment max - 80 dB, minus the segment's mean log energy"),
    "relative-floor+segment-max": (_REL_FLOOR + _MAX + _GAIN6,
                                   "floor at segment max - 80 dB, minus the segment's largest log energy"),
    "low-floor+gain30": (_LOW_FLOOR + _NO_MEAN + _GAIN30, "floor 1e-10, gain augmentation ±30 dB"),
    "low-floor": (_LOW_FLOOR + _NO_MEAN + _GAIN6, "floor 1e-10"),
    "relative-floor": (_REL_FLOOR + _NO_MEAN + _GAIN6, "floor at segment max - 80 dB"),
    "low-floor+segment-mean": (_LOW_FLOOR + _MEAN + _GAIN6, "floor 1e-10, minus the segment's mean log energy"),
    "gain30": (_OLD_FLOOR + _NO_MEAN + _GAIN30, "floor 1e-6, gain augmentation ±30 dB"),
    # the same two front-ends trained from another seed (same folds): how much clean accuracy moves by chance
    "current-seed1": (_OLD_FLOOR + _NO_MEAN + _GAIN6 + ["seed=1", "split.seed=0"], "as `current`, seed 1"),
    "relative-floor+segment-mean-seed1": (_REL_FLOOR + _MEAN + _GAIN6 + ["seed=1", "split.seed=0"],
                                          "as `relative-floor+segment-mean`, seed 1"),
    "relative-floor+segment-max-seed1": (_REL_FLOOR + _MAX + _GAIN6 + ["seed=1", "split.seed=0"],
                                         "as `relative-floor+segment-max`, seed 1"),
}


def fold_test_files(run: Path, ds: Any) -> dict[str, np.ndarray]:
    """The test files of each fold of a run (store indices), from its splits.csv."""
    index = {str(it.path): i for i, it in enumerate(ds.manifest.items)}
    with (run / "splits.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    folds = [c for c in rows[0] if c not in ("path", "label", "group")]
    return {f: np.array(sorted(index[r["path"]] for r in rows if r[f] == "test"), dtype=np.int64) for f in folds}


def score_scaled(run: Path, data: Path, gains_db: tuple[float, ...] = GAINS_DB) -> dict[str, Any]:
    """Track accuracy at each gain and the share of clips whose answer changes from 0 dB, over all folds."""
    from earmark.data.loader import SegmentTable
    from earmark.evaluation.aggregate import aggregate_by_track
    from earmark.inference.members import load_member
    from earmark.data.dataset import load_dataset
    from earmark.run import load_run_recipe
    from earmark.utils.files import read_json

    recipe = load_run_recipe(run)
    labels = read_json(run / "labels.json")
    ds = load_dataset(data, recipe, labels=labels, show_progress=False)
    entries = read_json(run / "members.json")["members"]
    preds: dict[float, list[np.ndarray]] = {g: [] for g in gains_db}
    truth: list[np.ndarray] = []
    for fold, files in fold_test_files(run, ds).items():
        table = SegmentTable.build(ds.store, files, recipe.segment, recipe.audio.sample_rate)
        members = [load_member(run, e, recipe, len(labels)) for e in entries if e["fold"] == fold]
        waves = table.read(ds.store, np.arange(len(table)))
        for g in gains_db:
            scaled = waves * np.float32(10.0 ** (g / 20.0))
            probs = np.mean([m.predict_proba(scaled) for m in members], axis=0)
            tracks, track_probs = aggregate_by_track(probs, table.files, recipe.eval.aggregate)
            preds[g].append(track_probs.argmax(1))
        truth.append(ds.label_index[tracks])
    y = np.concatenate(truth)
    ref = np.concatenate(preds[gains_db[0]])
    out: dict[str, Any] = {"n_tracks": int(y.size)}
    for g in gains_db:
        p = np.concatenate(preds[g])
        out[f"{g:g}"] = {"accuracy": float((p == y).mean()), "changed": float((p != ref).mean())}
    return out


def run_one(protocol: str, alt: str, quick: bool, out_root: Path) -> dict[str, Any]:
    import earmark

    p = PROTOCOLS[protocol]
    overrides = [*p["overrides"], *ALTERNATIVES[alt][0], f"train.epochs={1 if quick else EPOCHS}"]
    if quick:
        overrides += ["data.max_files_per_class=8"]
    out = out_root / f"{protocol}-{alt}{'-quick' if quick else ''}"
    marker = out.parent / f"{out.name}.wall.json"
    _, wall = timed_once(marker, lambda: earmark.train(p["data"], out, "default", overrides, group=p["group"],
                                                       show_progress=False))
    t0 = time.perf_counter()
    scores = score_scaled(out, p["data"])
    return {"protocol": protocol, "alternative": alt, "train_wall_s": wall,
            "score_wall_s": time.perf_counter() - t0, **scores}


def table(results: list[dict[str, Any]], quick: bool) -> str:
    rows = []
    for r in results:
        cells = [PROTOCOLS[r["protocol"]]["title"], f"`{r['alternative']}`", ALTERNATIVES[r["alternative"]][1]]
        cells += [f"{100 * r[f'{g:g}']['accuracy']:.1f}%" for g in GAINS_DB]
        cells += [f"{100 * r[f'{g:g}']['changed']:.1f}%" for g in GAINS_DB[1:]]
        cells += [r["n_tracks"], f"{r['train_wall_s'] / 60:.1f} min"]
        rows.append(cells)
    header = ["protocol", "alternative", "front-end", *(f"accuracy {g:g} dB" for g in GAINS_DB),
              *(f"changed {g:g} dB" for g in GAINS_DB[1:]), "test clips", "training wall time"]
    body = md_table(header, rows)
    body += (f"\n\nEvery run: the default recipe with {1 if quick else EPOCHS} epochs (not 40, to fit the CPU; the "
             "same for every alternative) and the alternative's settings; accuracy is of track answers on the "
             "test folds (both folds pooled). The test segments are read from the prepared store and scaled "
             "by the gain before the model (no re-decoding, no clipping). \"changed\": share of test clips "
             "whose answer differs from the same run's answer at 0 dB. Training wall time: the `earmark train` call "
             "(a run resumed after an interruption counts only the resumed part; on a shared machine, rough). "
             "Written by `bench/loudness.py`."
             f"{' QUICK MODE: tiny subsets, 1 epoch; not a result.' if quick else ''}\n")
    return body


WEIGHTS = Path(os.environ.get("EARMARK_WEIGHTS") or ROOT.parent / "shared" / "weights")


def pretrained_clips(n_esc10: int = 10) -> list[Path]:
    """The weights' example clip and the first ESC-10 clip of each class (fold 1)."""
    clips = [WEIGHTS / "metro_station-paris.wav"]
    with (SHARED / "esc10" / "manifest.csv").open(newline="") as fh:
        first: dict[str, Path] = {}
        for row in csv.DictReader(fh):
            first.setdefault(row["label"], SHARED / "esc10" / row["path"])
    return clips + list(first.values())[:n_esc10]


def pretrained_check(clips: list[Path], gains_db: tuple[float, ...] = GAINS_DB) -> dict[str, Any]:
    """The released EfficientAT mn04 tagger with its own front-end (unchanged) on clips scaled by each gain:
    top-1 agreement with 0 dB, the change of the 0 dB top-1 class's score, the largest change of any score,
    and the share of mel cells where the front-end's log offset outweighs the energy."""
    import torch

    from earmark.audio.io import load_audio
    from earmark.models.efficientat import build_mn, efficientat_features
    from earmark.models.net import Standardize, build_frontend

    cfg, sr = efficientat_features()
    frontend, norm = build_frontend(cfg, sr), Standardize(cfg.n_mels, cfg.normalize, cfg.norm_offset, cfg.norm_scale)
    net = build_mn(width_mult=0.4, num_classes=527)
    net.load_state_dict(torch.load(WEIGHTS / "mn04_as_mAP_432.pt", map_location="cpu", weights_only=True))
    net.eval()
    with (WEIGHTS / "audioset_class_labels_indices.csv").open(newline="") as fh:
        names = [row["display_name"] for row in csv.DictReader(fh)]
    per_clip = []
    for clip in clips:
        wave = load_audio(clip, sr)
        scores, offset_share = {}, {}
        for g in gains_db:
            x = torch.from_numpy(wave * np.float32(10.0 ** (g / 20.0)))[None]
            with torch.no_grad():
                logmel = frontend(x)
                scores[g] = torch.sigmoid(net(norm(logmel).transpose(2, 3)))[0].numpy()
            offset_share[g] = float((logmel.exp() - cfg.log_offset < cfg.log_offset).float().mean())
        top = int(scores[gains_db[0]].argmax())
        per_clip.append({"clip": clip.name, "top1": names[top], **{f"{g:g}": {
            "top1": names[int(scores[g].argmax())], "top1_score": float(scores[g][top]),
            "max_change": float(np.abs(scores[g] - scores[gains_db[0]]).max()),
            "offset_share": offset_share[g]} for g in gains_db}})
    summary = {f"{g:g}": {"agreement": float(np.mean([c[f"{g:g}"]["top1"] == c["top1"] for c in per_clip])),
                          "mean_top1_change": float(np.mean([c[f"{g:g}"]["top1_score"] - c[f"{gains_db[0]:g}"]["top1_score"]
                                                             for c in per_clip])),
                          "mean_max_change": float(np.mean([c[f"{g:g}"]["max_change"] for c in per_clip])),
                          "offset_share": float(np.mean([c[f"{g:g}"]["offset_share"] for c in per_clip]))}
               for g in gains_db}
    return {"clips": per_clip, "summary": summary}


def pretrained_table(check: dict[str, Any]) -> str:
    s = check["summary"]
    rows = [[f"{g:g} dB", f"{100 * s[f'{g:g}']['agreement']:.0f}%", f"{s[f'{g:g}']['mean_top1_change']:+.3f}",
             f"{s[f'{g:g}']['mean_max_change']:.3f}", f"{100 * s[f'{g:g}']['offset_share']:.0f}%"] for g in GAINS_DB]
    metro = check["clips"][0]
    return ("\n\n### The pretrained EfficientAT front-end (mn04 tagger, released AudioSet weights)\n\n"
            f"The released `mn04_as` checkpoint with its own front-end (`log(x + 1e-5)`, then `(x + 4.5) / 5`; "
            f"unchanged, it must match the checkpoint) on {len(check['clips'])} clips (the weights' metro example "
            "and the first ESC-10 clip of each class), each whole and scaled by the gain:\n\n"
            + md_table(["gain", "top-1 agrees with 0 dB", "mean change of the 0 dB top-1 score",
                        "mean largest change of any of the 527 scores", "mel cells where the offset outweighs the energy"],
                       rows)
            + f"\n\nMetro clip: {metro['top1']} scores {metro['0']['top1_score']:.2f} at 0 dB, "
            f"{metro['-20']['top1_score']:.2f} at -20 dB (top-1 {metro['-20']['top1']}) and "
            f"{metro['-40']['top1_score']:.2f} at -40 dB (top-1 {metro['-40']['top1']}). "
            f"Wall time of the check: {check.get('wall_s', 0):.0f} s.\n")


def write_report(out: Path, quick: bool) -> Path:
    """docs/benchmarks/loudness[-quick].md from every result in ``out``."""
    suffix = "-quick" if quick else ""
    every = all_results(out, suffix)
    check_path = out / "pretrained.json"
    check = json.loads(check_path.read_text()) if check_path.is_file() else None
    body = table(every, quick) + (pretrained_table(check) if check else "")
    return write_section("loudness" + suffix, "Loudness: answers of quieter inputs", body,
                         {"results": every, "epochs": 1 if quick else EPOCHS, "quick": quick, "pretrained": check})


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(ALTERNATIVES), help="comma-separated alternatives")
    ap.add_argument("--protocols", default=",".join(PROTOCOLS), help="comma-separated protocols")
    ap.add_argument("--quick", action="store_true", help="tiny smoke version")
    ap.add_argument("--pretrained", action="store_true", help="only the EfficientAT tagger check")
    ap.add_argument("--report", action="store_true", help="only rewrite the section from finished results")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "loudness")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.pretrained:
        run_pretrained(args.out)
    if args.pretrained or args.report:
        print(f"wrote {write_report(args.out, args.quick)}")
        return
    suffix = "-quick" if args.quick else ""
    # one results file per protocol set, so protocols can run as parallel processes into the same folder
    results_path = args.out / f"results{suffix}-{args.protocols.replace(',', '+')}.json"
    results: list[dict[str, Any]] = []
    for alt in args.only.split(","):  # alternatives outer: a partial benchmark has both datasets for the first ones
        for protocol in args.protocols.split(","):
            print(f"[loudness] {protocol} / {alt} ...", flush=True)
            r = run_one(protocol, alt, args.quick, args.out)
            print(f"[loudness] {protocol} / {alt}: " + ", ".join(
                f"{g:g} dB {100 * r[f'{g:g}']['accuracy']:.1f}% (changed {100 * r[f'{g:g}']['changed']:.1f}%)"
                for g in GAINS_DB) + f"; trained in {r['train_wall_s'] / 60:.1f} min", flush=True)
            results.append(r)
            results_path.write_text(json.dumps(results, indent=2) + "\n")  # a partial run is still usable
            write_report(args.out, args.quick)
    if not args.quick and set(args.protocols.split(",")) == set(PROTOCOLS):  # the whole benchmark: the tagger too
        run_pretrained(args.out)
        write_report(args.out, args.quick)


def run_pretrained(out: Path) -> None:
    t0 = time.perf_counter()
    check = pretrained_check(pretrained_clips())
    check["wall_s"] = time.perf_counter() - t0
    (out / "pretrained.json").write_text(json.dumps(check, indent=2) + "\n")
    print(f"[loudness] EfficientAT mn04: {json.dumps(check['summary'])}", flush=True)


def all_results(out: Path, suffix: str) -> list[dict[str, Any]]:
    """Every finished result in ``out`` (of every protocol set), in the order of ALTERNATIVES and PROTOCOLS."""
    found = {}
    for path in sorted(out.glob(f"results{suffix}-*.json")):
        for r in json.loads(path.read_text()):
            found[(r["alternative"], r["protocol"])] = r
    order = [(a, p) for a in ALTERNATIVES for p in PROTOCOLS]
    return [found[k] for k in order if k in found]


if __name__ == "__main__":
    main()
