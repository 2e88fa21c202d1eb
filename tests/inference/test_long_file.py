"""Predicting a long file streams it: memory holds a block and a batch, never the file.

Reading the 10-minute 44.1 kHz stereo file used here whole would take 212 MB as float32 (plus its mono
mix and the 16 kHz version); streamed, the peak rises by the model's activations for one batch and a
30 s block, and the allocator's fragmentation (74 MB here; 128 MB for 4 min and 132 MB for 16 min in
bench/long_file.py, whose default compares 30 min with 2 h). Reading it whole measured 340 MB.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from earmark.audio.segment import segment_starts
from earmark.demo import synth

RATE, MINUTES = 44100, 10
BOUND_MB = 150  # generous; reading the file whole would add more than 212 MB

SCRIPT = """
import json, sys
import torch
torch.set_num_threads(1)
from earmark.inference.predictor import Predictor
from earmark.utils.memory import current_rss_bytes, peak_rss_bytes, reset_peak_rss
run, short, long = sys.argv[1:4]
p = Predictor(run, batch_size=16)
p.predict_file(short)  # warm-up: the model and its activations for full batches (their size is the batch's)
base, reset = current_rss_bytes(), reset_peak_rss()
r = p.predict_file(long)
print(json.dumps({"base": base, "peak": peak_rss_bytes(), "reset": reset, "n_segments": r["n_segments"],
                  "duration_s": r["duration_s"], "label": r["label"]}))
"""


def write_long_flac(path: Path, minutes: float, rate: int = RATE) -> Path:
    """A stereo FLAC written 30 s at a time (never whole in memory): alternating tone and knock."""
    rng = np.random.default_rng(0)
    pieces = [np.stack([synth(lbl, 30.0, rate, rng)] * 2, axis=1) for lbl in ("tone", "knock")]
    with sf.SoundFile(str(path), "w", rate, 2, format="FLAC", subtype="PCM_16") as f:
        for k in range(int(minutes * 2)):
            f.write(pieces[k % 2] * (0.5 + 0.4 * (k % 3) / 2))
    return path


def test_a_ten_minute_file_is_predicted_in_bounded_memory(trained_run: Path, tmp_path: Path):
    long = write_long_flac(tmp_path / "ten minutes.flac", MINUTES)
    short = tmp_path / "short.wav"
    sf.write(str(short), synth("tone", 10.0, 16000, np.random.default_rng(1)), 16000)  # 19 segments
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(trained_run), str(short), str(long)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["duration_s"] == MINUTES * 60
    # 1 s segments, 0.5 s hop
    assert r["n_segments"] == segment_starts(MINUTES * 60 * 16000, 16000, 8000).size
    grew_mb = (r["peak"] - r["base"]) / 2 ** 20
    assert grew_mb < BOUND_MB, f"predicting {MINUTES} min raised the peak by {grew_mb:.0f} MB"
