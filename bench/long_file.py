"""Memory of predicting long files: a 2-hour file is streamed, so the peak does not grow with its length.

    python bench/long_file.py            # 30 min and 2 h (several minutes of CPU)
    python bench/long_file.py --quick    # 4 min and 16 min, the same comparison at a small scale

Trains a tiny run (or uses ``--run``), writes FLAC files of each length block by block (44.1 kHz
stereo, never whole in memory), and predicts each in a fresh process. That process loads the run, warms up
on a 10 s file, resets its peak-memory counter (``/proc/self/clear_refs``) and predicts the long file;
it reports its resident size before and its peak during the prediction. Writes
``docs/benchmarks/long_file.md`` (``long_file-quick.md`` with ``--quick``).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
RATE, CHANNELS = 44100, 2
CHILD = """
import json, sys, time
import torch
torch.set_num_threads(int(sys.argv[4]))
from earmark.inference.predictor import Predictor
from earmark.utils.memory import current_rss_bytes, peak_rss_bytes, reset_peak_rss
run, short, long = sys.argv[1:4]
p = Predictor(run, batch_size=int(sys.argv[5]))
p.predict_file(short)
base, reset = current_rss_bytes(), reset_peak_rss()
t = time.perf_counter()
r = p.predict_file(long)
print(json.dumps({"base": base, "peak": peak_rss_bytes(), "reset": reset, "seconds": time.perf_counter() - t,
                  "n_segments": r["n_segments"], "duration_s": r["duration_s"]}))
"""


def write_long_flac(path: Path, minutes: float, rate: int = RATE) -> None:
    """Alternating 30 s pieces of two synthesized classes, written 30 s at a time."""
    from earmark.demo import synth

    rng = np.random.default_rng(0)
    pieces = [np.stack([synth(lbl, 30.0, rate, rng)] * CHANNELS, axis=1) for lbl in ("tone", "knock")]
    with sf.SoundFile(str(path), "w", rate, CHANNELS, format="FLAC", subtype="PCM_16") as f:
        for k in range(int(round(minutes * 2))):
            f.write(pieces[k % 2] * (0.5 + 0.2 * (k % 3)))


def tiny_run(folder: Path) -> Path:
    """A small CNN trained for one epoch on a synthesized 2-class dataset (seconds)."""
    import earmark
    from earmark.demo import synth

    rng = np.random.default_rng(0)
    for label in ("tone", "knock"):
        (folder / "data" / label).mkdir(parents=True, exist_ok=True)
        for k in range(6):
            sf.write(str(folder / "data" / label / f"{k}.wav"), synth(label, 1.5, 16000, rng), 16000)
    earmark.train(folder / "data", folder / "run", "default",
                  ["model.name=cnn", "train.epochs=1", "train.batch_size=8", "train.loggers=[csv]",
                   "augment.mixup.p=0", "augment.specaugment.p=0"], show_progress=False)
    return folder / "run"


def measure(run: Path, short: Path, long: Path, threads: int, batch: int) -> dict:
    cmd = [sys.executable, "-c", CHILD, str(run), str(short), str(long), str(threads), str(batch)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"prediction of {long} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="4 and 16 minutes instead of 30 and 120")
    ap.add_argument("--minutes", type=float, nargs="+", help="file lengths (default 30 120, quick 4 16)")
    ap.add_argument("--run", type=Path, help="a finished run to predict with (default: train a tiny one)")
    ap.add_argument("--repeats", type=int, default=1, help="predictions per length (the median is reported)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the predicting process")
    ap.add_argument("--batch", type=int, default=32, help="segments per batch")
    args = ap.parse_args()
    minutes = args.minutes or ([4.0, 16.0] if args.quick else [30.0, 120.0])
    os.environ.setdefault("EARMARK_PROGRESS", "0")

    with tempfile.TemporaryDirectory(prefix="earmark-long-") as tmp:
        tmp_path = Path(tmp)
        os.environ.setdefault("EARMARK_CACHE", str(tmp_path / "cache"))
        run = args.run or tiny_run(tmp_path)
        short = tmp_path / "short.wav"
        from earmark.demo import synth

        sf.write(str(short), synth("tone", 10.0, 16000, np.random.default_rng(1)), 16000)
        rows = []
        for m in minutes:
            path = tmp_path / f"{m:g}min.flac"
            t = time.perf_counter()
            write_long_flac(path, m)
            written = time.perf_counter() - t
            results = [measure(run, short, path, args.threads, args.batch) for _ in range(args.repeats)]
            grow = float(np.median([(r["peak"] - r["base"]) / 2 ** 20 for r in results]))
            secs = float(np.median([r["seconds"] for r in results]))
            rows.append({"minutes": m, "file_mb": path.stat().st_size / 2 ** 20, "write_s": written,
                         "seconds": secs, "realtime": m * 60 / secs, "base_mb": results[0]["base"] / 2 ** 20,
                         "peak_mb": float(np.median([r["peak"] / 2 ** 20 for r in results])), "grow_mb": grow,
                         "whole_mb": m * 60 * RATE * CHANNELS * 4 / 2 ** 20,
                         "segments": results[0]["n_segments"],
                         "reset": all(r["reset"] for r in results)})
            path.unlink()
            print(json.dumps(rows[-1]), flush=True)
    write_markdown(rows, args)


def write_markdown(rows: list[dict], args: argparse.Namespace) -> Path:
    from common import md_table, write_section

    first, last = rows[0], rows[-1]
    table = md_table(
        ["length", "FLAC", "segments", "predict time", "x real time", "RSS before", "peak RSS",
         "peak above start", "the file as float32"],
        [[f"{r['minutes']:g} min", f"{r['file_mb']:.0f} MB", r["segments"], f"{r['seconds']:.1f} s",
          f"{r['realtime']:.0f}", f"{r['base_mb']:.0f} MB", f"{r['peak_mb']:.0f} MB",
          f"{r['grow_mb']:.0f} MB", f"{r['whole_mb']:.0f} MB"] for r in rows])
    ratio_len = last["minutes"] / first["minutes"]
    ratio_mem = last["grow_mb"] / max(first["grow_mb"], 1e-9)
    body = "\n".join([
        f"`python bench/long_file.py{' --quick' if args.quick else ''}`: {args.threads} torch thread(s), "
        f"batches of {args.batch} segments, a small CNN (1 s segments, 0.5 s hop, 16 kHz), FLAC files at "
        f"{RATE} Hz, {CHANNELS} channels, {args.repeats} prediction(s) per length (median). Each prediction "
        "runs in a fresh process that loads the run and warms up on a 10 s file first; *peak above start* is "
        "its peak resident size during the prediction minus its size just before.", "", table, "",
        f"A file {ratio_len:.0f}x longer raised the peak {ratio_mem:.2f}x as much ({first['grow_mb']:.0f} MB "
        f"vs {last['grow_mb']:.0f} MB), while holding it whole would take {last['whole_mb']:.0f} MB as "
        "float32 at its own rate before any resampling. What the peak holds: one 30 s block of decoded "
        "audio and its resampled copy, one batch of segments and the model's activations for it, and the "
        "allocator's fragmentation (it varies from run to run, but not with length); the per-segment probabilities kept "
        "for the track answer are 4 bytes x classes per segment.",
        "" if not args.quick else "\nThis is the quick scale (`--quick`, 4 and 16 min). "
        "`python bench/long_file.py` compares 30 min with 2 h (about 4 min of CPU for the predictions).",
        "" if all(r["reset"] for r in rows) else "\n(The peak counter could not be reset here: peaks include "
        "the warm-up.)",
    ])
    path = write_section("long_file-quick" if args.quick else "long_file",
                         "Long files: memory does not grow with length", body, {"rows": rows})
    print(f"written {path}")
    return path


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "bench"))
    main()
