"""Channel selection inside the exported graph, for runs that hear one channel (or mid/side) of a file.

A run with ``audio.channels`` other than ``mix`` is exported with a multichannel input
``waveform (batch, channels, samples)``; :class:`ChannelSelect` turns it into the mono signal the run was
trained on, with the same arithmetic as :func:`earmark.audio.io.select_channels` (so onnxruntime and the
Python predictor agree on a stereo file). :func:`lift_mono` goes the other way: the multichannel input whose
selection is a given mono signal, so already-selected audio (the Predictor's segments) can be scored by the
same graph.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from torch import Tensor, nn

from ..audio.io import channels_needed

if TYPE_CHECKING:
    from ..audio.resample import ResampledInput
    from ..audio.segment import SegmentCutter
    from .graph import WaveformClassifier


class ChannelSelect(nn.Module):
    """``(batch, channels, samples)`` -> ``(batch, samples)``: one channel, or mid/side of the first two."""

    def __init__(self, channels: str | int) -> None:
        super().__init__()
        if channels == "mix":
            raise ValueError("a run that hears the mix-down takes mono input; it needs no channel selection")
        self.channels = channels
        self.needed = channels_needed(channels)

    def forward(self, wave: Tensor) -> Tensor:
        if self.channels == "mid":
            return (wave[:, 0] + wave[:, 1]) * 0.5
        if self.channels == "side":
            return (wave[:, 0] - wave[:, 1]) * 0.5
        return wave[:, self.needed - 1]


class ChannelSelected(nn.Module):
    """A waveform classifier (``(batch, samples)`` in, perhaps behind a resampler) behind a
    :class:`ChannelSelect`."""

    def __init__(self, select: ChannelSelect, classifier: WaveformClassifier | ResampledInput) -> None:
        super().__init__()
        self.select, self.classifier = select, classifier
        self.cutter: SegmentCutter = classifier.cutter

    def forward(self, wave: Tensor) -> tuple[Tensor, Tensor]:
        return self.classifier(self.select(wave))


def lift_mono(wave: np.ndarray, channels: str | int) -> np.ndarray:
    """The input ``(batch, n, samples)`` whose selection by ``channels`` is ``wave`` ``(batch, samples)``, exactly:
    the signal in the selected channel (zeros elsewhere); for mid, in both channels; for side, ``+wave`` and
    ``-wave``."""
    x = np.asarray(wave, dtype=np.float32)
    if channels == "mid":
        return np.stack([x, x], axis=1)
    if channels == "side":
        return np.stack([x, -x], axis=1)
    k = channels_needed(channels) - 1
    out = np.zeros((x.shape[0], k + 1, x.shape[1]), dtype=np.float32)
    out[:, k] = x
    return out


def parse_channels(value: str) -> str | int:
    """``audio.channels`` as written in a file's metadata (an index is written as digits)."""
    return int(value) if value.isdigit() else value


def example_channels(channels: str | int) -> int:
    """How many channels the export's example input has (at least two: a stereo file)."""
    return max(2, channels_needed(channels))

