"""Segments of prepared audio as batches: ``(batch, samples)`` float32 waveforms and integer labels.

A :class:`SegmentTable` lists ``(file, start)`` pairs over a :class:`~earmark.data.store.PreparedStore`;
samples are sliced out of the memory-mapped store a whole batch at a time, so loading costs little next
to a training step and needs no worker processes.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..audio.segment import SegmentSpec, read_segment
from ..config import SegmentConfig
from .store import PreparedStore


@dataclass
class SegmentTable:
    """The segments of some files: ``files[k]`` (store index), ``starts[k]`` (sample offset)."""

    files: np.ndarray
    starts: np.ndarray
    length: int
    fill: Literal["pad", "repeat"] = "pad"

    def __len__(self) -> int:
        return int(self.files.size)

    @classmethod
    def build(cls, store: PreparedStore, file_indices: Sequence[int] | np.ndarray, cfg: SegmentConfig,
              sample_rate: int) -> "SegmentTable":
        spec = SegmentSpec.from_config(cfg, sample_rate)
        length = spec.length
        lengths = store.lengths
        files, starts = [], []
        for i in file_indices:
            if not store.files[int(i)].ok:
                continue
            s = spec.starts(int(lengths[int(i)]))
            files.append(np.full(s.size, int(i), dtype=np.int64))
            starts.append(s)
        cat = (lambda a: np.concatenate(a) if a else np.zeros(0, dtype=np.int64))
        return cls(cat(files), cat(starts), length, "repeat" if cfg.short == "repeat" else "pad")

    def read(self, store: PreparedStore, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), self.length), dtype=np.float32)
        for j, r in enumerate(rows):
            out[j] = read_segment(store.waveform(int(self.files[r])), int(self.starts[r]), self.length, self.fill)
        return out


class SegmentDataset(Dataset):
    """Indexed by a *list* of rows (see :class:`BatchSampler`): returns one whole batch."""

    def __init__(self, store: PreparedStore, table: SegmentTable, labels: np.ndarray,
                 soft_targets: np.ndarray | None = None) -> None:
        self.store, self.table = store, table
        self.labels = np.asarray(labels, dtype=np.int64)  # per store file
        if soft_targets is not None and len(soft_targets) != len(table):
            raise ValueError(f"{len(soft_targets)} soft targets for {len(table)} segments")
        self.soft_targets = None if soft_targets is None else np.asarray(soft_targets, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.table)

    def segment_labels(self) -> np.ndarray:
        return self.labels[self.table.files]

    def __getitem__(self, rows: list[int]) -> tuple[torch.Tensor, ...]:
        """``(waves (B, samples), labels (B,))``, plus soft targets ``(B, classes)`` when distilling."""
        rows = np.asarray(rows)  # type: ignore[assignment]
        waves = torch.from_numpy(self.table.read(self.store, rows))
        labels = torch.from_numpy(self.labels[self.table.files[rows]])
        if self.soft_targets is None:
            return waves, labels
        return waves, labels, torch.from_numpy(self.soft_targets[rows])


class BatchSampler(Sampler[list[int]]):
    """Yields lists of row indices: shuffled (seeded per epoch), or class-balanced with replacement."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int = 0, drop_last: bool = False,
                 weights: np.ndarray | None = None) -> None:
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.drop_last, self.weights = drop_last, weights
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng(self.seed + 1_000_003 * self.epoch)
        if self.weights is not None:
            p = self.weights / self.weights.sum()
            order = rng.choice(self.n, size=self.n, replace=True, p=p)
        elif self.shuffle:
            order = rng.permutation(self.n)
        else:
            order = np.arange(self.n)
        stop = len(self) * self.batch_size if self.drop_last else self.n
        for b in range(0, stop, self.batch_size):
            yield order[b: b + self.batch_size].tolist()


def balanced_weights(labels: np.ndarray) -> np.ndarray:
    """Per-example weights that make every class equally likely to be drawn."""
    counts = np.bincount(labels)
    return 1.0 / counts[labels]


def make_loader(dataset: SegmentDataset, batch_size: int, shuffle: bool, seed: int = 0,
                balanced: bool = False, drop_last: bool = False, num_workers: int = 0) -> torch.utils.data.DataLoader:
    weights = balanced_weights(dataset.segment_labels()) if balanced else None
    sampler = BatchSampler(len(dataset), batch_size, shuffle, seed, drop_last, weights)
    return torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=num_workers,
                                       persistent_workers=num_workers > 0)
