"""Divide and conquer: cut audio of any length into fixed-length, overlapping segments.

A segment is just ``(start, length)`` in samples; nothing is copied until it is read, so the same
decoded audio serves any segment setting.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

if TYPE_CHECKING:  # pragma: no cover
    from ..config import SegmentConfig

ShortPolicy = Literal["pad", "repeat", "drop"]
TailPolicy = Literal["align", "pad", "drop"]


@dataclass(frozen=True)
class SegmentSpec:
    """A recipe's segment settings in samples at one sample rate (the one place seconds become samples)."""

    length: int
    hop: int
    short: ShortPolicy = "pad"
    tail: TailPolicy = "align"
    min_tail: int = 0

    @classmethod
    def from_config(cls, cfg: "SegmentConfig", sample_rate: int) -> "SegmentSpec":
        return cls(int(round(cfg.length_s * sample_rate)), int(round(cfg.hop_s * sample_rate)), cfg.short,
                   cfg.tail, int(round(cfg.min_tail_s * sample_rate)))

    def starts(self, n_samples: int) -> np.ndarray:
        """:func:`segment_starts` of a signal of ``n_samples``."""
        return segment_starts(n_samples, self.length, self.hop, self.short, self.tail, self.min_tail)


def segment_starts(
    n_samples: int,
    length: int,
    hop: int,
    short: ShortPolicy = "pad",
    tail: TailPolicy = "align",
    min_tail: int = 0,
) -> np.ndarray:
    """Start offsets (samples) of the segments of a signal of ``n_samples``.

    Args:
        length, hop: segment length and hop in samples.
        short: a signal shorter than ``length`` gives one segment (``pad``: zeros after it, ``repeat``:
            looped) or none (``drop``).
        tail: what covers audio left after the last full segment: one more segment ending exactly at the
            end (``align``, overlapping its neighbour more), one zero-padded segment (``pad``, if at least
            ``min_tail`` samples remain), or nothing (``drop``).
    """
    if length <= 0 or hop <= 0:
        raise ValueError(f"segment length and hop must be positive, got {length} and {hop}")
    if n_samples <= 0:
        return np.zeros(0, dtype=np.int64)
    if n_samples < length:
        return np.zeros(0 if short == "drop" else 1, dtype=np.int64)
    starts = np.arange(0, n_samples - length + 1, hop, dtype=np.int64)
    end = int(starts[-1]) + length
    if end < n_samples:
        if tail == "align":
            starts = np.append(starts, n_samples - length)
        elif tail == "pad" and n_samples - (int(starts[-1]) + hop) >= max(1, min_tail):
            starts = np.append(starts, int(starts[-1]) + hop)
    return starts


def read_segment(audio: np.ndarray, start: int, length: int, fill: Literal["pad", "repeat"] = "pad") -> np.ndarray:
    """``audio[start:start+length]``, filled to ``length`` with zeros or by looping the audio."""
    seg = audio[start:start + length]
    if seg.shape[0] == length:
        return seg
    if fill == "repeat" and audio.shape[0] > 0 and start == 0:
        reps = -(-length // audio.shape[0])
        return np.tile(audio, reps)[:length]
    out = np.zeros(length, dtype=audio.dtype)
    out[: seg.shape[0]] = seg
    return out


def cut(
    audio: np.ndarray,
    length: int,
    hop: int,
    short: ShortPolicy = "pad",
    tail: TailPolicy = "align",
    min_tail: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut a mono signal into segments.

    Returns:
        ``(segments, starts)``: float array ``(n_segments, length)`` and their start offsets.
    """
    starts = segment_starts(audio.shape[0], length, hop, short, tail, min_tail)
    fill: Literal["pad", "repeat"] = "repeat" if short == "repeat" else "pad"
    segs = np.stack([read_segment(audio, int(s), length, fill) for s in starts]) if starts.size else (
        np.zeros((0, length), dtype=np.float32))
    return segs.astype(np.float32, copy=False), starts


def stream_segments(
    blocks: Iterable[np.ndarray],
    length: int,
    hop: int,
    short: ShortPolicy = "pad",
    tail: TailPolicy = "align",
    min_tail: int = 0,
) -> Iterator[tuple[int, np.ndarray]]:
    """Cut a stream of mono blocks into ``(start, segment)`` pairs, keeping at most ~one segment in memory.

    Yields exactly the segments :func:`cut` gives on the whole signal, in order.
    """
    buf = np.zeros(0, dtype=np.float32)
    buf_start = 0  # absolute sample index of buf[0]
    total = 0
    next_start = 0
    last: int | None = None
    for block in blocks:
        buf = np.concatenate([buf, np.asarray(block, dtype=np.float32)])
        total += len(block)
        while next_start + length <= total:
            off = next_start - buf_start
            yield next_start, buf[off: off + length].copy()
            last = next_start
            next_start += hop
        keep_from = min(next_start, max(0, total - length))
        buf = buf[keep_from - buf_start:]
        buf_start = keep_from
    # Looping only ever fills a file shorter than one segment; a padded tail is zero-filled.
    fill: Literal["pad", "repeat"] = "repeat" if short == "repeat" and total < length else "pad"
    for s in segment_starts(total, length, hop, short, tail, min_tail):
        s = int(s)
        if last is None or s > last:
            off = s - buf_start
            yield s, read_segment(buf[off:] if off > 0 else buf, 0, length, fill)


# ---------------------------------------------------------------------------- torch (exported graphs)


def _indicator(value: Any) -> Any:
    """1 if the (symbolic) integer ``value`` is positive, else 0, without Python branching."""
    return torch.sym_min(torch.sym_max(value, 0), 1)


class SegmentCutter(nn.Module):
    """Waveforms ``(batch, samples)`` -> segments ``(batch, n_segments, length)``, as ``segment_starts``.

    Written with shape arithmetic only (no data-dependent branches), so one exported graph serves every
    input length. ``tail``: ``align`` (a last segment ending at the end), ``pad`` (one zero-padded
    segment if at least ``max(1, min_tail)`` samples remain) or ``drop``. An input shorter than one
    segment gives one segment, zero-padded (``short="pad"``) or looped (``short="repeat"``); with
    ``short="drop"`` it is zero-padded too (a graph has to answer; the Predictor drops such files itself).
    """

    def __init__(self, length: int, hop: int, tail: str = "align", short: str = "pad", min_tail: int = 0) -> None:
        super().__init__()
        if length <= 0 or hop <= 0:
            raise ValueError(f"segment length and hop must be positive, got {length} and {hop}")
        if tail not in ("align", "pad", "drop"):
            raise ValueError(f"unknown tail policy {tail!r}")
        if short not in ("pad", "repeat", "drop"):
            raise ValueError(f"unknown short-input policy {short!r}")
        self.length, self.hop, self.tail, self.short = int(length), int(hop), tail, short
        self.min_tail = max(1, int(min_tail))

    @classmethod
    def from_spec(cls, spec: SegmentSpec) -> "SegmentCutter":
        return cls(spec.length, spec.hop, spec.tail, spec.short, spec.min_tail)

    def forward(self, wave: Tensor) -> Tensor:
        n, length, hop = wave.shape[1], self.length, self.hop
        rest = torch.sym_max(n - length, 0)  # room for starts after 0
        if self.tail == "align":
            count = (rest + hop - 1) // hop + 1
        else:
            count = rest // hop + 1
            if self.tail == "pad":
                next_start = count * hop
                last_end = next_start - hop + length
                count = count + (_indicator(n - length + 1) * _indicator(n - last_end)
                                 * _indicator(n - next_start - self.min_tail + 1))
        starts = torch.arange(count, device=wave.device) * hop
        if self.tail == "align":
            starts = starts.clamp(max=rest)
        index = starts[:, None] + torch.arange(length, device=wave.device)[None, :]  # (n_segments, length)
        padded = nn.functional.pad(wave, (0, length))
        if self.short == "repeat":
            # Loop a short input: index modulo its length (never wraps for inputs of a segment or more).
            modulus = torch.full((), n + length * _indicator(n - length + 1), dtype=index.dtype, device=wave.device)
            index = index % modulus
        return padded[:, index]
