"""Decoding throughput per format (files/s and x real time), earmark against librosa.load on the same files.

The files are ESC-10 clips (5 s, 44.1 kHz after upsampling, mono) re-encoded into each format; both
decoders return float32 mono at 16 kHz (librosa with its default soxr_hq resampler).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, bar_chart, md_table, median_time, write_section  # noqa: E402

FORMATS = {"wav": dict(format="WAV", subtype="PCM_16"), "flac": dict(format="FLAC"),
           "ogg": dict(format="OGG", subtype="VORBIS"), "mp3": dict(format="MP3"),
           "opus": dict(format="OGG", subtype="OPUS")}


def make_files(folder: Path, n: int) -> dict[str, list[Path]]:
    import soxr

    clips = sorted((SHARED / "esc10" / "audio").glob("*.flac"))[:n]
    out: dict[str, list[Path]] = {k: [] for k in FORMATS}
    if shutil.which("ffmpeg"):
        out["m4a"] = []
    for i, clip in enumerate(clips):
        x, sr = sf.read(str(clip), dtype="float32")
        x44 = soxr.resample(x, sr, 44100)
        for fmt, kw in FORMATS.items():
            rate = 48000 if fmt == "opus" else 44100
            data = soxr.resample(x, sr, rate) if rate != 44100 else x44
            p = folder / f"{i:03d}.{fmt}"
            sf.write(str(p), data, rate, **kw)
            out[fmt].append(p)
        if "m4a" in out:
            p = folder / f"{i:03d}.m4a"
            subprocess.run(["ffmpeg", "-v", "error", "-i", str(folder / f"{i:03d}.wav"), "-c:a", "aac", str(p)],
                           check=True)
            out["m4a"].append(p)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    n = 6 if args.quick else args.files
    from earmark.audio.io import load_audio

    try:
        import librosa
    except ImportError:  # pragma: no cover
        librosa = None
    rows, data = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        files = make_files(Path(tmp), n)
        audio_s = 5.0 * n
        for fmt, paths in files.items():
            ours = median_time(lambda: [load_audio(p, 16000) for p in paths], args.repeats)
            theirs = (median_time(lambda: [librosa.load(str(p), sr=16000, mono=True) for p in paths], args.repeats)
                      if librosa else float("nan"))
            a, b = load_audio(paths[0], 16000), librosa.load(str(paths[0]), sr=16000)[0] if librosa else None
            agree = float(np.corrcoef(a[: len(b)], b[: len(a)])[0, 1]) if b is not None else float("nan")
            data[fmt] = {"earmark_s": ours, "librosa_s": theirs, "files": n, "correlation": agree}
            rows.append([fmt, f"{n / ours:.0f}", f"{audio_s / ours:.0f}x", f"{n / theirs:.0f}", f"{audio_s / theirs:.0f}x",
                         f"{theirs / ours:.2f}", f"{agree:.4f}"])
            print(f"[decode] {fmt}: earmark {n / ours:.0f} files/s, librosa {n / theirs:.0f} files/s", flush=True)
    body = md_table(["format", "earmark files/s", "earmark x real time", "librosa files/s", "librosa x real time",
                     "speed-up", "waveform correlation"], rows)
    body += (f"\n\n{n} ESC-10 clips of 5 s re-encoded to each format (44.1 kHz; opus 48 kHz), decoded to 16 kHz "
             f"mono float32; median of {args.repeats} passes. m4a goes through ffmpeg (a subprocess per file), "
             "mp3 through miniaudio (dr_mp3) in-process, the others through libsndfile in-process. Correlation: the two decoders' outputs for the first "
             "file.\n")
    suffix = "-quick" if args.quick else ""
    body += "\n" + bar_chart(f"decode{suffix}", list(data), {
        "earmark": [data[f]["files"] / data[f]["earmark_s"] for f in data],
        "librosa.load": [data[f]["files"] / data[f]["librosa_s"] for f in data]},
        "files per second (log)", "Decoding 5 s clips to 16 kHz mono", log=True) + "\n"
    write_section("decode" + suffix, "Decoding throughput", body, data)


if __name__ == "__main__":
    main()
