"""Time to classify one 3-minute track end to end (decode, segment, features, model, aggregate), eager and
ONNX, and peak memory. Target: under 1 s with the default model on ONNX.

The model is the default recipe trained briefly on ESC-10 (accuracy is irrelevant here, only its shape and
cost); the track is ESC-10 clips joined into 3 minutes, as FLAC at 22.05 kHz and as MP3 at 44.1 kHz.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED, md_table, median_time, write_section  # noqa: E402

_PEAK = """
import json, resource, sys, time
import earmark
p = earmark.Predictor(sys.argv[1], backend=sys.argv[3])
p.predict_file(sys.argv[2])
t = time.perf_counter(); p.predict_file(sys.argv[2]); dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def ensure_run(out: Path, quick: bool) -> Path:
    import earmark

    run = out / "track-model"
    if not (run / "run.json").is_file() or json.loads((run / "run.json").read_text())["status"] != "complete":
        earmark.train(SHARED / "esc10", run, "default", ["train.epochs=1", "data.max_files_per_class=8",
                                                          "split.max_folds=1"], show_progress=False)
    return run


def make_track(folder: Path, seconds: float = 180.0) -> dict[str, Path]:
    import soxr

    clips = sorted((SHARED / "esc10" / "audio").glob("*.flac"))
    parts, total = [], 0
    for c in clips:
        x, sr = sf.read(str(c), dtype="float32")
        parts.append(x)
        total += len(x)
        if total >= seconds * sr:
            break
    track = np.concatenate(parts)[: int(seconds * sr)]
    flac, mp3 = folder / "track.flac", folder / "track.mp3"
    sf.write(str(flac), track, sr)
    sf.write(str(mp3), soxr.resample(track, sr, 44100), 44100, format="MP3")
    return {"flac (22.05 kHz)": flac, "mp3 (44.1 kHz)": mp3}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = ap.parse_args(argv)
    import earmark
    from earmark.audio.io import load_audio

    run = ensure_run(args.out, args.quick)
    rows, data = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tracks = make_track(Path(tmp), 30.0 if args.quick else 180.0)
        for name, path in tracks.items():
            decode = median_time(lambda: load_audio(path, 16000), args.repeats)
            for backend in ("torch", "onnx"):
                p = earmark.Predictor(run, backend=backend)
                t = median_time(lambda: p.predict_file(path), args.repeats)
                peak = json.loads(subprocess.run([sys.executable, "-c", _PEAK, str(run), str(path), backend],
                                                 capture_output=True, text=True, check=True).stdout.splitlines()[-1])
                data[f"{name}/{backend}"] = {"seconds": t, "decode_s": decode, "peak_mb": peak["peak_mb"]}
                rows.append([name, "eager (torch)" if backend == "torch" else "ONNX Runtime", f"{t:.3f}",
                             f"{decode:.3f}", f"{peak['peak_mb']:.0f}"])
                print(f"[track] {name} {backend}: {t:.3f} s (decode {decode:.3f} s), peak {peak['peak_mb']:.0f} MB",
                      flush=True)
    recipe = earmark.Predictor(run).recipe
    body = md_table(["file", "backend", "seconds end to end", "of which decoding", "peak memory (MB, whole process)"],
                    rows)
    body += (f"\n\n{'30 s (quick mode)' if args.quick else '3-minute'} track, default recipe "
             f"({recipe.model.name}, {recipe.segment.length_s:g} s segments every {recipe.segment.hop_s:g} s, "
             f"{recipe.features.n_mels} mels); median of {args.repeats}; a Predictor loaded once, as a server "
             "would. Peak memory is the maximum resident set of a fresh process that loads the run and "
             "predicts twice (Python, torch and onnxruntime included).\n")
    write_section("track" + ("-quick" if args.quick else ""), "One track end to end", body, data)


if __name__ == "__main__":
    main()
