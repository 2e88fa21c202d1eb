"""Checking a dataset before training (``earmark audit``): decode it, then :mod:`earmark.data.audit` analyses it."""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..data.audit import analyse, write_audit
from ..data.manifest import Manifest

__all__ = ["audit", "write_audit"]


def _headers(manifest: Manifest) -> Iterator[tuple[str, int, int, float | None]]:
    """``(extension, sample rate, channels, seconds)`` of every readable header (0s when unreadable)."""
    from ..audio.io import audio_info
    from ..errors import AudioDecodeError

    for it in manifest.items:
        ext = it.path.suffix.lower() or "(none)"
        try:
            info = audio_info(it.path)
        except AudioDecodeError:
            yield ext, 0, 0, None
            continue
        yield ext, info.sample_rate, info.channels, info.duration_s


def audit(data: str | Path, recipe: Any = "default", overrides: list[str] | None = None,
          group: str | None = None, show_progress: bool = True) -> dict[str, Any]:
    """Audit a dataset folder (or manifest CSV); returns the report (see :func:`write_audit`)."""
    from ..config import load_recipe
    from ..data.sources import discover
    from ..data.store import prepare_manifest

    started = time.perf_counter()
    rec = load_recipe(recipe, overrides) if isinstance(recipe, str) else recipe
    manifest = discover(data, group=group or rec.data.group)
    store = prepare_manifest(manifest, rec.audio, rec.data.cache_dir, rec.data.workers, show_progress)
    formats: Counter = Counter()
    rates: Counter = Counter()
    channels: Counter = Counter()
    for ext, sr, ch, _seconds in _headers(manifest):
        formats[ext] += 1
        if sr:
            rates[str(sr)] += 1
            channels[str(ch)] += 1
    unreadable: list[dict[str, str | None]] = [{"path": p, "reason": r} for p, r in manifest.missing]
    unreadable += [{"path": manifest.relpath(it), "reason": f.error}
                   for it, f in zip(manifest.items, store.files) if not f.ok]
    report: dict[str, Any] = {
        "data": str(data), "layout": manifest.layout, "group_by": manifest.group_by,
        "n_files": len(manifest.items) + len(manifest.missing), "n_usable": int(store.ok.sum()),
        "n_classes": len(manifest.labels), "decoded_at_hz": store.sample_rate,
        "formats": dict(sorted(formats.items())),
        "sample_rates": dict(sorted(rates.items(), key=lambda kv: int(kv[0]))),
        "channels": dict(sorted(channels.items(), key=lambda kv: int(kv[0]))),
        "unreadable": unreadable,
        **analyse(manifest, store, show_progress),
    }
    if unreadable:
        report["warnings"].insert(0, f"{len(unreadable)} file(s) cannot be used and will be skipped "
                                     f"(e.g. {unreadable[0]['path']}: {unreadable[0]['reason']})")
    report["usable_hours"] = round(float(store.lengths[store.ok].sum()) / store.sample_rate / 3600, 4)
    report["seconds"] = round(time.perf_counter() - started, 3)
    return report
