"""The pretrained AudioSet tagger: top-k of 527 AudioSet labels for audio files, no training.

    >>> earmark.tag(["street.mp3"], top=5)[0]["tags"][0]
    {'label': 'Traffic noise, roadway noise', 'score': 0.61}
    >>> Tagger("mn04_as").tag_file("street.mp3", segments=True)["segments"][0]["tags"]

Tagging is multi-label: scores are the network's sigmoid outputs (several labels can be near 1), not a
softmax. A file of up to :attr:`Tagger.window_s` (10 s, the length the model was trained on) goes through
the network whole; a longer one is cut into 10 s windows every :attr:`Tagger.hop_s` (5 s; the last window
ends at the file's end) and a label's file score is the **maximum** of its window scores by default
(``aggregate="max"``: a tag is present if it is heard anywhere, so a short event in a long recording is
not averaged away), or their mean (``aggregate="mean"``). Files are streamed: memory stays bounded
whatever their length.
"""
from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ..audio.io import check_stream, resample, stream_audio
from ..audio.segment import stream_segments
from ..errors import AudioDecodeError, ConfigError
from .predictor import expand_paths

log = logging.getLogger(__name__)

Aggregate = Literal["max", "mean"]


def top_tags(scores: np.ndarray, labels: list[str], top: int) -> list[dict[str, Any]]:
    """The ``top`` highest scores as ``[{"label", "score"}]``, highest first."""
    order = np.argsort(-scores, kind="stable")[:max(0, top)]
    return [{"label": labels[int(i)], "score": round(float(scores[int(i)]), 6)} for i in order]


def windows(blocks: Iterable[np.ndarray], length: int, hop: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, window)`` pairs: one unpadded window for a signal of up to ``length`` samples, else
    ``length``-sample windows every ``hop`` with the last one aligned to the end."""
    it = iter(blocks)
    head: list[np.ndarray] = []
    n = 0
    for block in it:
        head.append(block)
        n += len(block)
        if n > length:
            break
    else:  # the whole signal fits in one window: no padding (zeros would change the pooled scores)
        if n:
            yield 0, np.concatenate(head).astype(np.float32, copy=False)
        return
    yield from stream_segments(itertools.chain(head, it), length, hop, "pad", "align")


def run_windows(blocks: Iterable[np.ndarray], length: int, hop: int, batch_size: int,
                fn: Callable[[np.ndarray], np.ndarray], sample_rate: int, name: str
                ) -> tuple[np.ndarray, np.ndarray, int]:
    """``fn`` on the :func:`windows` of a recording, ``batch_size`` windows at a time: returns the window starts
    (samples), the stacked outputs and the recording's length in samples.

    Raises:
        AudioDecodeError: no samples, or every sample is zero.
    """
    starts: list[int] = []
    batch: list[np.ndarray] = []
    parts: list[np.ndarray] = []
    n_samples, nonzero = 0, False
    for start, win in windows(blocks, length, hop):
        n_samples = max(n_samples, start + len(win))
        nonzero = nonzero or bool(np.any(win))
        if batch and len(win) != len(batch[0]):  # only a lone short window differs in length
            parts.append(fn(np.stack(batch)))
            batch = []
        starts.append(start)
        batch.append(win)
        if len(batch) == batch_size:
            parts.append(fn(np.stack(batch)))
            batch = []
    if batch:
        parts.append(fn(np.stack(batch)))
    check_stream(n_samples, nonzero, sample_rate, name, min_duration_s=0.05, reject_silent=True)
    return np.asarray(starts, dtype=np.int64), np.concatenate(parts), n_samples


class Tagger:
    """A pretrained AudioSet network loaded once; tags files, folders, waveforms or streams of blocks.

    Args:
        model: a known checkpoint name (resolved in ``$EARMARK_WEIGHTS``, downloaded once when missing and
            online) or a path to a weights file.
        window_s, hop_s: the window the network sees and the hop between windows of a longer file.
        aggregate: a long file's score per label: ``max`` (default) or ``mean`` of its window scores.
        batch_size: windows per forward pass.
    """

    def __init__(self, model: str = "mn04_as", window_s: float = 10.0, hop_s: float = 5.0,
                 aggregate: Aggregate = "max", batch_size: int = 8, device: str = "cpu") -> None:
        from ..models.audioset import audioset_labels, load_audioset_model

        if window_s <= 0 or hop_s <= 0:
            raise ConfigError(f"tagging windows need a positive length and hop, got {window_s} s and {hop_s} s")
        if aggregate not in ("max", "mean"):
            raise ConfigError(f"aggregate must be max or mean, not {aggregate!r}")
        self.model = load_audioset_model(model).to(device).eval()
        self.labels = audioset_labels(self.model.weights_path)
        if len(self.labels) != self.model.num_classes:
            raise ConfigError(f"{model}: the class list has {len(self.labels)} names but the network "
                              f"{self.model.num_classes} outputs")
        self.sample_rate = self.model.sample_rate
        self.window = round(window_s * self.sample_rate)
        self.hop = round(hop_s * self.sample_rate)
        self.aggregate: Aggregate = aggregate
        self.batch_size = batch_size

    @torch.inference_mode()
    def scores(self, batch: np.ndarray) -> np.ndarray:
        """Sigmoid scores ``(n, 527)`` of equal-length waveforms ``(n, samples)``."""
        device = next(self.model.parameters()).device
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(device)
        return torch.sigmoid(self.model(x).float()).cpu().numpy()

    def tag_blocks(self, blocks: Iterable[np.ndarray], top: int = 10, segments: bool = False,
                   name: str = "(audio)") -> dict[str, Any]:
        """Tag one recording given as float32 mono blocks at :attr:`sample_rate`."""
        starts, seg, n_samples = run_windows(blocks, self.window, self.hop, self.batch_size, self.scores,
                                             self.sample_rate, name)
        sr = self.sample_rate
        track = seg.max(axis=0) if self.aggregate == "max" else seg.mean(axis=0)
        result: dict[str, Any] = {"path": name, "tags": top_tags(track, self.labels, top),
                                  "duration_s": round(n_samples / sr, 3), "n_windows": int(seg.shape[0])}
        if segments:
            result["segments"] = [
                {"start": round(int(s) / sr, 3), "end": round(min(int(s) + self.window, n_samples) / sr, 3),
                 "tags": top_tags(p, self.labels, top)} for s, p in zip(starts, seg)]
        return result

    def tag_file(self, path: str | Path, top: int = 10, segments: bool = False) -> dict[str, Any]:
        """Tag one file of any length and format. Raises :class:`AudioDecodeError` for bad audio."""
        return self.tag_blocks(stream_audio(path, self.sample_rate), top, segments, str(path))

    def tag_waveform(self, wave: np.ndarray, sample_rate: int, top: int = 10, segments: bool = False,
                     name: str = "(waveform)") -> dict[str, Any]:
        """Tag a waveform ``(samples,)`` (or ``(samples, channels)``) at ``sample_rate``."""
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim == 2:
            wave = wave.mean(axis=1 if wave.shape[1] <= 16 else 0)
        if not np.isfinite(wave).all():
            raise AudioDecodeError(name, "contains NaN or Inf samples")
        return self.tag_blocks([resample(wave, sample_rate, self.sample_rate)], top, segments, name)

    def tag(self, paths: Iterable[str | Path], top: int = 10, segments: bool = False) -> list[dict[str, Any]]:
        """Tag files and folders. A file that cannot be used gives ``{"path", "error"}``, not a crash."""
        results = []
        for p in expand_paths(paths):
            try:
                results.append(self.tag_file(p, top, segments))
            except AudioDecodeError as exc:
                log.warning("skipped %s: %s", exc.path, exc.reason)
                results.append({"path": str(p), "error": exc.reason})
        return results


def tag(paths: Iterable[str | Path], model: str = "mn04_as", top: int = 10, segments: bool = False,
        aggregate: Aggregate = "max") -> list[dict[str, Any]]:
    """One-call tagging: ``earmark.tag(["a.wav", "folder/"], top=5)``."""
    return Tagger(model, aggregate=aggregate).tag(paths, top, segments)


def tags_csv(results: list[dict[str, Any]], segments: bool = False) -> str:
    """Results of :meth:`Tagger.tag` as CSV text, one row per (file or window, label):
    ``path, level, start_s, end_s, rank, label, score, error`` (``level`` is ``file`` or ``segment``)."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "level", "start_s", "end_s", "rank", "label", "score", "error"])
    for r in results:
        if "error" in r:
            w.writerow([r["path"], "file", "", "", "", "", "", r["error"]])
            continue
        for k, t in enumerate(r["tags"], 1):
            w.writerow([r["path"], "file", 0.0, r["duration_s"], k, t["label"], t["score"], ""])
        for s in r.get("segments", []) if segments else []:
            for k, t in enumerate(s["tags"], 1):
                w.writerow([r["path"], "segment", s["start"], s["end"], k, t["label"], t["score"], ""])
    return buf.getvalue()
