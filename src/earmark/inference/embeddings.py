"""``earmark embed``: pretrained embeddings of a dataset, for users who build their own models.

    earmark embed data/esc10 --model mn04_as --out emb/ --segments

Any layout :func:`earmark.data.sources.discover` understands. Each file is cut like the tagger cuts it
(one unpadded window up to ``window_s``, else ``window_s`` windows every ``hop_s``, the last one ending at
the file's end); each window gives one embedding (the frozen network's pooled features), and a file's
embedding is the mean of its windows'. Written to ``OUT``:

- ``embeddings.npy``: ``(files, dim)`` float32, one row per usable file;
- ``manifest.csv``: ``row, path, label, group, start_s, end_s, n_segments`` (row = row of the .npy);
- with ``--segments``: ``segment_embeddings.npy`` ``(segments, dim)`` and ``segments.csv``
  (``row, path, label, start_s, end_s, file_row``);
- ``skipped.csv`` (files that could not be decoded, with the reason) and ``info.json`` (checkpoint,
  its sha256, dimension, window settings).
"""
from __future__ import annotations

import csv
import io
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..audio.io import stream_audio
from ..data.sources import discover
from ..errors import AudioDecodeError, ConfigError
from ..utils.files import atomic_write_json, atomic_write_npy, atomic_write_text
from ..utils.progress import progress
from .tagger import run_windows

log = logging.getLogger(__name__)


def _csv_text(header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def embed_file(model: Any, path: str | Path, window: int, hop: int, batch_size: int = 8
               ) -> tuple[np.ndarray, np.ndarray, int]:
    """Window embeddings ``(n, dim)``, window starts (samples) and the file's length in samples."""
    starts, emb, n = run_windows(stream_audio(path, model.sample_rate), window, hop, batch_size, model.embed_numpy,
                                 model.sample_rate, str(path))
    return emb, starts, n


def embed_dataset(data: str | Path, out: str | Path, model: str = "mn04_as", segments: bool = False,
                  window_s: float = 10.0, hop_s: float = 5.0, group: str | None = None,
                  show_progress: bool = True) -> dict[str, Any]:
    """Embed every file of a dataset into ``out``; returns the information written to ``info.json``."""
    from ..models.audioset import load_audioset_model, model_info

    if window_s <= 0 or hop_s <= 0:
        raise ConfigError(f"embedding windows need a positive length and hop, got {window_s} s and {hop_s} s")
    started = time.perf_counter()
    manifest = discover(data, group=group)
    net = load_audioset_model(model).eval()
    sr = net.sample_rate
    window, hop = round(window_s * sr), round(hop_s * sr)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    file_emb: list[np.ndarray] = []
    seg_emb: list[np.ndarray] = []
    file_rows: list[list[Any]] = []
    seg_rows: list[list[Any]] = []
    skipped = [list(m) for m in manifest.missing]
    bar = progress(len(manifest.items), "embedding", unit="file", disable=not show_progress)
    for item in manifest.items:
        try:
            emb, starts, n = embed_file(net, item.path, window, hop)
        except AudioDecodeError as exc:
            log.warning("skipped %s: %s", exc.path, exc.reason)
            skipped.append([str(item.path), exc.reason])
            bar.update(1)
            continue
        row = len(file_rows)
        file_emb.append(emb.mean(axis=0))
        file_rows.append([row, str(item.path), item.label, item.group, 0.0, round(n / sr, 3), len(starts)])
        if segments:
            for s, e in zip(starts, emb):
                seg_rows.append([len(seg_rows), str(item.path), item.label, round(int(s) / sr, 3),
                                 round(min(int(s) + window, n) / sr, 3), row])
                seg_emb.append(e)
        bar.update(1)
    bar.close()
    dim = net.embed_dim
    stack = (lambda xs: np.stack(xs).astype(np.float32) if xs else np.zeros((0, dim), dtype=np.float32))
    atomic_write_npy(out / "embeddings.npy", stack(file_emb))
    atomic_write_text(out / "manifest.csv", _csv_text(
        ["row", "path", "label", "group", "start_s", "end_s", "n_segments"], file_rows))
    if segments:
        atomic_write_npy(out / "segment_embeddings.npy", stack(seg_emb))
        atomic_write_text(out / "segments.csv", _csv_text(
            ["row", "path", "label", "start_s", "end_s", "file_row"], seg_rows))
    atomic_write_text(out / "skipped.csv", _csv_text(["path", "reason"], skipped))
    info = {**model_info(net).as_dict(), "data": str(data), "layout": manifest.layout,
            "window_s": window_s, "hop_s": hop_s, "n_files": len(file_rows), "n_segments": len(seg_rows),
            "n_skipped": len(skipped), "file_embedding": "mean of the window embeddings",
            "seconds": round(time.perf_counter() - started, 2)}
    atomic_write_json(out / "info.json", info)
    return info
