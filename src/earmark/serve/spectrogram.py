"""The log-mel spectrogram the page shows, computed with the run's own filter bank, as a small array.

The frames are averaged down to at most ``max_columns`` columns, converted to dB, clipped to the top
``range_db`` and quantised to one byte per cell, so even a long file costs a few tens of kilobytes.
"""
from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np
import torch

from ..config import Recipe
from ..features.fbank import LogMelFilterBank
from ..features.frontend import build_logmel


class DisplaySpectrogram:
    """The run's log-mel filter bank, for display (for MFCC runs, the filter bank under the DCT; for
    waveform models, the default bank at the run's sample rate)."""

    def __init__(self, recipe: Recipe, max_columns: int = 800, range_db: float = 80.0) -> None:
        f, sr = recipe.features, recipe.audio.sample_rate
        if f.kind == "waveform":
            self.f_min, self.f_max = 0.0, min(8000.0, sr / 2)
            self.fbank = LogMelFilterBank(sample_rate=sr, f_max=self.f_max)
        else:
            self.f_min, self.f_max = f.f_min, (f.f_max if f.f_max is not None else sr / 2)
            self.fbank = build_logmel(f, sr)
        self.fbank.eval()
        self.max_columns, self.range_db = max_columns, range_db

    @torch.inference_mode()
    def __call__(self, wave: np.ndarray) -> dict[str, Any]:
        """A JSON-ready log-mel spectrogram of a mono waveform ``(samples,)``.

        ``data`` is base64 of ``uint8`` values, ``n_frames`` rows of ``n_mels`` (lowest band first); 0 is
        ``db_min`` and 255 ``db_max``. ``seconds_per_frame`` is the duration each row covers. Long inputs are
        computed in chunks of frames, so memory stays bounded.
        """
        fbank = self.fbank
        wave = np.ascontiguousarray(wave, dtype=np.float32)
        hop, frame = fbank.hop_length, fbank.spectrogram.frame_length
        # In chunks of frames (bounded memory for long files); chunk c starts at frame c * chunk exactly.
        chunk = 4096
        parts = []
        for first in range(0, fbank.num_frames(wave.shape[0]), chunk):
            piece = wave[first * hop: first * hop + (chunk - 1) * hop + frame]
            parts.append(fbank(torch.from_numpy(piece)[None, :])[0, 0].numpy())
        logmel = np.concatenate(parts).astype(np.float64)  # (frames, mels), natural log of energies
        frames = logmel.shape[0]
        step = max(1, math.ceil(frames / self.max_columns))
        if step > 1:
            pad = (-frames) % step
            if pad:
                logmel = np.concatenate([logmel, np.repeat(logmel[-1:], pad, axis=0)])
            energy = np.exp(logmel).reshape(-1, step, logmel.shape[1]).mean(axis=1)  # average energies
            logmel = np.log(np.maximum(energy, fbank.log_floor))
        db = logmel * (10.0 / np.log(10.0))
        top = float(db.max())
        lo = top - self.range_db
        q = np.clip(np.round((db - lo) / self.range_db * 255.0), 0, 255).astype(np.uint8)
        return {
            "n_frames": int(q.shape[0]), "n_mels": int(q.shape[1]),
            "seconds_per_frame": fbank.hop_length / fbank.sample_rate * step,
            "duration_s": wave.shape[0] / fbank.sample_rate, "f_min": float(self.f_min), "f_max": float(self.f_max),
            "db_min": round(lo, 2), "db_max": round(top, 2), "data": base64.b64encode(q.tobytes()).decode("ascii"),
        }
