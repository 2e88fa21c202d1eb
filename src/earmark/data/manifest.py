"""The manifest: one row per audio file with its label, group and any predefined fold or split."""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import DatasetError


@dataclass(frozen=True)
class Item:
    """One labeled file. ``group`` keeps related files (same track, speaker, source) on one split side."""

    path: Path
    label: str
    group: str
    fold: str | None = None
    split: str | None = None
    meta: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


@dataclass
class Manifest:
    items: list[Item]
    root: Path
    layout: str
    group_by: str = "file"
    #: rows that could not be used before decoding: (path, reason)
    missing: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def labels(self) -> list[str]:
        """Sorted class names (numeric order when all labels are integers)."""
        labels = {it.label for it in self.items}
        if all(lbl.lstrip("-").isdigit() for lbl in labels):
            return sorted(labels, key=int)
        return sorted(labels)

    @property
    def has_folds(self) -> bool:
        return any(it.fold not in (None, "") for it in self.items)

    @property
    def has_split(self) -> bool:
        return any(it.split not in (None, "") for it in self.items)

    def relpath(self, item: Item) -> str:
        try:
            return item.path.relative_to(self.root).as_posix()
        except ValueError:
            return str(item.path)

    def subset(self, keep: list[int]) -> "Manifest":
        return replace(self, items=[self.items[i] for i in keep])

    def regroup(self, column: str) -> "Manifest":
        """Group files by a metadata column (``--group speaker``)."""
        if column in ("file", "path"):
            items = [replace(it, group=str(it.path)) for it in self.items]
            return replace(self, items=items, group_by="file")
        if column == "group":
            return self
        bad = [it for it in self.items if column not in it.meta]
        if bad:
            avail = sorted(self.items[0].meta) if self.items else []
            raise DatasetError(
                f"--group {column}: {len(bad)} of {len(self.items)} files have no {column!r} column "
                f"(first: {bad[0].path}); columns available: {', '.join(avail) or 'none'}"
            )
        items = [replace(it, group=f"{column}={it.meta[column]}") for it in self.items]
        return replace(self, items=items, group_by=column)

    def limit_per_class(self, n: int, seed: int = 0) -> "Manifest":
        """A seeded subset with at most ``n`` files per class (for smoke tests and quick looks)."""
        by_label: dict[str, list[int]] = defaultdict(list)
        for i, it in enumerate(self.items):
            by_label[it.label].append(i)
        rng = random.Random(seed)
        keep: list[int] = []
        for label in sorted(by_label):
            idx = by_label[label]
            rng.shuffle(idx)
            keep.extend(idx[:n])
        return self.subset(sorted(keep))
