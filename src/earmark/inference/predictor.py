"""Predictor: a run folder in, predictions out, for files of any length.

    >>> p = Predictor("runs/esc10")
    >>> p.predict(["dog.wav"])[0]["label"]
    'dog'

Everything it needs comes from the run folder (sample rate, segment and feature settings, labels,
aggregation, members and their weights); it never reads the training data or any other config.
Long files are streamed: decoded, cut and scored block by block, so memory stays bounded.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..audio.io import AUDIO_EXTENSIONS, check_stream, stream_audio
from ..audio.segment import SegmentSpec, stream_segments
from ..ensemble import vote, with_tta
from ..errors import AudioDecodeError, EarmarkError, RunError
from ..evaluation.aggregate import aggregate_track
from ..run import open_run
from .members import load_members

log = logging.getLogger(__name__)

Backend = Literal["torch", "onnx"]


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; folders replaced by the audio files under them (sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS)
        else:
            out.append(p)
    return out


class Predictor:
    """Loads a finished run once; predicts files, waveforms or segments."""

    def __init__(self, run_dir: str | Path, backend: Backend = "torch", device: str = "cpu",
                 batch_size: int | None = None, onnx_path: str | Path | None = None) -> None:
        self.run = open_run(run_dir)
        self.recipe = self.run.recipe()
        self.labels = self.run.labels()
        self.backend = backend
        cfg = self.recipe
        self.sample_rate = cfg.audio.sample_rate
        self.spec = SegmentSpec.from_config(cfg.segment, self.sample_rate)
        self.segment_samples, self.hop_samples = self.spec.length, self.spec.hop
        self.batch_size = batch_size or cfg.eval.batch_size
        self.voting = self.run.voting()
        self.weights = [m.weight for m in self.run.members()]
        if backend == "onnx":
            self._onnx = self._load_onnx(onnx_path)
            self.members: list[Any] = []
        elif backend == "torch":
            self.members = load_members(self.run, cfg, len(self.labels), device, self.batch_size)
        else:
            raise EarmarkError(f"unknown backend {backend!r}; use torch or onnx")

    def _load_onnx(self, onnx_path: str | Path | None) -> Any:
        """The run's ONNX model: ``onnx_path`` as given, else ``RUN/model.onnx``, (re-)exported when missing
        or stale (or, for a read-only run folder, exported into the cache)."""
        from .onnx import OnnxModel, export_onnx

        digest = self.run.digest()
        if onnx_path:
            model = OnnxModel(onnx_path)
            if model.digest != digest:
                raise RunError(f"{onnx_path} was not exported from {self.run.path} as it is now; export it again "
                               f"with `earmark export {self.run.path} --out {onnx_path}`")
            return model
        path = self.run.file("model.onnx")
        if path.is_file():
            try:
                model = OnnxModel(path)
                if model.digest == digest:
                    return model
            except RunError:
                pass  # unreadable: export it again
            log.info("%s is out of date; exporting it again", path)
        try:
            export_onnx(self.run, path)
        except OSError as exc:
            from ..data.store import cache_root

            path = cache_root() / "onnx" / f"{digest[:24]}.onnx"
            log.info("cannot write %s (%s); exporting to %s", self.run.file("model.onnx"), exc, path)
            if not path.is_file():
                export_onnx(self.run, path)
        return OnnxModel(path)

    # ----------------------------------------------------------------------------------- segments

    def segment_probs(self, segments: np.ndarray) -> np.ndarray:
        """Probabilities ``(n, classes)`` for waveform segments ``(n, segment_samples)``."""
        if segments.shape[0] == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        if self.backend == "onnx":
            return np.concatenate([self._onnx.predict_segments(segments[b: b + self.batch_size])
                                   for b in range(0, segments.shape[0], self.batch_size)])
        e = self.recipe.ensemble
        per_member = [with_tta(m.predict_proba, segments, e.tta, e.tta_shift) for m in self.members]
        return vote(per_member, self.voting, self.weights).astype(np.float32)

    def _segments(self, blocks: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Batches of ``(starts, segments)`` from a stream of blocks."""
        sp = self.spec
        starts, segs = [], []
        stream = stream_segments(blocks, sp.length, sp.hop, sp.short, sp.tail, sp.min_tail)
        for start, seg in stream:
            starts.append(start)
            segs.append(seg)
            if len(segs) == self.batch_size:
                yield np.asarray(starts), np.stack(segs)
                starts, segs = [], []
        if segs:
            yield np.asarray(starts), np.stack(segs)

    # -------------------------------------------------------------------------------------- files

    def predict_blocks(self, blocks: Iterable[np.ndarray], segments: bool = False,
                       name: str = "(audio)") -> dict[str, Any]:
        """Predict one recording given as a stream of float32 mono blocks at the run's sample rate."""
        n_samples = 0
        nonzero = False

        def counted(it: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
            nonlocal n_samples, nonzero
            for b in it:
                n_samples += len(b)
                nonzero = nonzero or bool(np.any(b))
                yield b

        all_starts, all_probs = [], []
        for starts, segs in self._segments(counted(blocks)):
            all_starts.append(starts)
            all_probs.append(self.segment_probs(segs))
        sr = self.sample_rate
        check_stream(n_samples, nonzero, sr, name, min_duration_s=self.recipe.audio.min_duration_s,
                     reject_silent=True)
        if not all_probs:
            raise AudioDecodeError(name, f"shorter than one segment ({self.recipe.segment.length_s:g} s) and the run "
                                         "drops short files (segment.short=drop)")
        seg_probs = np.concatenate(all_probs)
        starts = np.concatenate(all_starts)
        track = aggregate_track(seg_probs, self.recipe.eval.aggregate)
        result: dict[str, Any] = {
            "path": name, "label": self.labels[int(track.argmax())],
            "probabilities": {lbl: round(float(p), 6) for lbl, p in zip(self.labels, track)},
            "duration_s": round(n_samples / sr, 3), "n_segments": int(seg_probs.shape[0]),
        }
        if segments:
            result["segments"] = [
                {"start": round(int(s) / sr, 3),
                 "end": round(min(int(s) + self.segment_samples, max(n_samples, 1)) / sr, 3),
                 "label": self.labels[int(p.argmax())],
                 "probabilities": {lbl: round(float(v), 6) for lbl, v in zip(self.labels, p)}}
                for s, p in zip(starts, seg_probs)]
        return result

    def predict_file(self, path: str | Path, segments: bool = False) -> dict[str, Any]:
        """Predict one file of any length and format. Raises :class:`AudioDecodeError` for bad audio."""
        path = Path(path)
        if self.recipe.audio.separation != "none":
            from ..data.store import decode_for_store

            wave = decode_for_store(str(path), self.recipe.audio.model_copy(update={"max_duration_s": None}))
            return self.predict_blocks([wave], segments, str(path))
        return self.predict_blocks(stream_audio(path, self.sample_rate, channels=self.recipe.audio.channels),
                                   segments, str(path))

    def predict_waveform(self, wave: np.ndarray, sample_rate: int | None = None, segments: bool = False,
                         name: str = "(waveform)") -> dict[str, Any]:
        """Predict a waveform ``(samples,)``, or ``(samples, channels)`` (up to 16 channels; else read as
        ``(channels, samples)``) heard as the run's ``audio.channels`` says."""
        from ..audio.io import resample, select_channels

        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim == 2:
            wave = select_channels(wave if wave.shape[1] <= 16 else wave.T, self.recipe.audio.channels, name)
        if sample_rate and sample_rate != self.sample_rate:
            wave = resample(wave, sample_rate, self.sample_rate)
        if not np.isfinite(wave).all():
            raise AudioDecodeError(name, "contains NaN or Inf samples")
        return self.predict_blocks([wave], segments, name)

    def predict(self, paths: Iterable[str | Path], segments: bool = False) -> list[dict[str, Any]]:
        """Predict files and folders. A file that cannot be used gives ``{"path", "error"}``, not a crash."""
        results = []
        for p in expand_paths(paths):
            try:
                results.append(self.predict_file(p, segments))
            except AudioDecodeError as exc:
                log.warning("skipped %s: %s", exc.path, exc.reason)
                results.append({"path": str(p), "error": exc.reason})
        return results


def predict(run_dir: str | Path, paths: Iterable[str | Path], segments: bool = False,
            backend: Backend = "torch") -> list[dict[str, Any]]:
    """One-call prediction: ``earmark.predict("runs/x", ["a.wav", "folder/"])``."""
    return Predictor(run_dir, backend=backend).predict(paths, segments)
