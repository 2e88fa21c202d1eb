"""Audit a dataset before trusting scores on it: classes, lengths, formats, bad files, duplicates, leaks.

``earmark audit DATA`` (:func:`earmark.jobs.audit.audit`) reports

- per class: files, usable files, total / mean / shortest / longest duration;
- sample rates, channel counts and formats as stored (read from the headers);
- files that cannot be used, with the reason (the prepared store's and the manifest's);
- exact duplicates: files whose decoded audio is identical (whatever the container or format);
- near-duplicates: the same recording again after a gain change, a small shift, trimming or lossy
  re-encoding, found with audio fingerprints (:mod:`earmark.audio.fingerprint`);
- for each set of (near-)duplicates whether it crosses classes (a label is wrong) and whether it
  straddles a split: predefined folds, a split column, or, without those, different groups, which any
  group-aware split may put on two sides (scores would be inflated);
- class imbalance, and classes too small to be both trained and tested;

as ``audit.json``, ``audit.md`` and ``class_balance.png``. Decoding goes through the prepared store, so
it is cached and shared with training; fingerprints are cached beside the store. :func:`quick_warnings`
gives the warnings alone from an already prepared store; ``earmark train`` logs them.
"""
from __future__ import annotations

import hashlib
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..audio.fingerprint import FINGERPRINT_VERSION, Fingerprint, compare, fingerprint
from ..utils.files import atomic_write, atomic_write_json, atomic_write_text
from .manifest import Manifest
from .store import PreparedStore

log = logging.getLogger(__name__)

#: Only the first minutes of a file are fingerprinted (copies of long files are found by their start).
FINGERPRINT_SECONDS = 300.0
#: Candidates checked per file: its nearest neighbours by spectral summary.
NEIGHBOURS = 5
#: Largest/smallest class ratio (files or duration) from which imbalance is reported.
IMBALANCE_RATIO = 3.0
#: Examples named in one warning.
_EXAMPLES = 3


# ------------------------------------------------------------------------------------------ fingerprints


def store_fingerprints(store: PreparedStore, show_progress: bool = False) -> list[Fingerprint | None]:
    """Fingerprints of a store's usable files (``None`` for skipped ones), cached in the store folder."""
    cache = store.folder / f"fingerprints-v{FINGERPRINT_VERSION}.npz"
    if cache.is_file():
        try:
            return _load_fingerprints(cache, len(store))
        except (OSError, ValueError, KeyError) as exc:
            log.info("recomputing fingerprints (%s unreadable: %s)", cache, exc)
    from ..utils.progress import progress

    fps: list[Fingerprint | None] = []
    with progress(total=len(store), desc="fingerprint", unit="file", disable=not show_progress) as bar:
        for i, f in enumerate(store.files):
            ok = f.ok
            fps.append(fingerprint(store.waveform(i), store.sample_rate, FINGERPRINT_SECONDS) if ok else None)
            bar.update(1)
    try:
        _save_fingerprints(cache, fps)
    except OSError as exc:  # a read-only cache still gets an audit
        log.info("cannot cache fingerprints in %s: %s", cache, exc)
    return fps


def _save_fingerprints(path: Path, fps: list[Fingerprint | None]) -> None:
    lengths = np.array([len(f) if f is not None else -1 for f in fps], dtype=np.int64)
    ok = [f for f in fps if f is not None]

    def cat(name: str, dtype: type) -> np.ndarray:
        parts = [getattr(f, name) for f in ok]
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    arrays = {
        "lengths": lengths, "coarse": cat("coarse", np.uint32), "fine": cat("fine", np.uint32),
        "valid": cat("valid", bool), "envelope": cat("envelope", np.float32),
        "summary": np.stack([f.summary for f in ok]) if ok else np.zeros((0, 0), np.float32),
    }

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]

    atomic_write(path, write)


def _load_fingerprints(path: Path, n: int) -> list[Fingerprint | None]:
    with np.load(path, allow_pickle=False) as z:
        lengths, coarse, fine, valid, env, summary = (z[k] for k in ("lengths", "coarse", "fine", "valid",
                                                                     "envelope", "summary"))
    if lengths.size != n:
        raise ValueError(f"{lengths.size} fingerprints for {n} files")
    out: list[Fingerprint | None] = []
    pos = k = 0
    for length in lengths.tolist():
        if length < 0:
            out.append(None)
            continue
        sl = slice(pos, pos + length)
        out.append(Fingerprint(coarse[sl], fine[sl], valid[sl], env[sl], summary[k]))
        pos += length
        k += 1
    return out


# ------------------------------------------------------------------------------------------ duplicates


Pair = tuple[int, int, float | None, float | None]


@dataclass
class DuplicateSet:
    """Files that hold the same recording: ``pairs`` are ``(a, b, ber, offset_s)`` over store indices,
    with ``ber`` and ``offset_s`` ``None`` for identical decoded audio."""

    files: list[int]
    pairs: list[Pair] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return all(ber is None for _, _, ber, _ in self.pairs)


def _audio_hashes(store: PreparedStore) -> dict[int, str]:
    out = {}
    for i, f in enumerate(store.files):
        if f.ok:
            samples = np.ascontiguousarray(store.waveform(i)).tobytes()
            out[i] = hashlib.blake2b(samples, digest_size=16).hexdigest()
    return out


def _neighbour_pairs(index: list[int], summaries: np.ndarray, k: int) -> set[tuple[int, int]]:
    """Pairs of each file with its ``k`` nearest neighbours by summary (squared Euclidean), in chunks."""
    n = len(index)
    if n < 2:
        return set()
    k = min(k, n - 1)
    s = summaries.astype(np.float64)
    sq = (s ** 2).sum(axis=1)
    pairs: set[tuple[int, int]] = set()
    for start in range(0, n, 1024):
        block = slice(start, min(start + 1024, n))
        d = sq[block, None] + sq[None, :] - 2.0 * s[block] @ s.T
        rows = np.arange(block.start, block.stop)
        d[rows - start, rows] = np.inf
        nearest = np.argpartition(d, k - 1, axis=1)[:, :k]
        for r, js in zip(rows.tolist(), nearest.tolist()):
            for j in js:
                a, b = index[r], index[j]
                pairs.add((min(a, b), max(a, b)))
    return pairs


def find_duplicates(store: PreparedStore, fps: list[Fingerprint | None]) -> list[DuplicateSet]:
    """Sets of files (store indices) holding the same recording, exact or near, largest first."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    pairs: list[Pair] = []
    by_hash: dict[str, list[int]] = defaultdict(list)
    for i, h in _audio_hashes(store).items():
        by_hash[h].append(i)
    for members in by_hash.values():
        for other in members[1:]:
            pairs.append((members[0], other, None, None))
            parent[find(other)] = find(members[0])
    index = [i for i, f in enumerate(fps) if f is not None]
    if index:
        summaries = np.stack([fps[i].summary for i in index])  # type: ignore[union-attr]
        for a, b in sorted(_neighbour_pairs(index, summaries, NEIGHBOURS)):
            if find(a) == find(b):
                continue  # identical audio, or already joined through another copy
            m = compare(fps[a], fps[b])  # type: ignore[arg-type]
            if m.is_duplicate:
                pairs.append((a, b, round(m.ber, 4), round(m.offset_s, 3)))
                parent[find(b)] = find(a)
    sets: dict[int, DuplicateSet] = {}
    for pair in pairs:
        sets.setdefault(find(pair[0]), DuplicateSet([])).pairs.append(pair)
    for ds in sets.values():
        ds.files = sorted({x for a, b, *_ in ds.pairs for x in (a, b)})
    return sorted(sets.values(), key=lambda d: (-len(d.files), d.files[0]))


# ------------------------------------------------------------------------------------------ analysis


def _side_kind(manifest: Manifest) -> str:
    """What a split follows without other settings: predefined folds, a split column, else groups."""
    return "fold" if manifest.has_folds else "split" if manifest.has_split else "group"


def _side(manifest: Manifest, i: int, kind: str) -> str:
    it = manifest.items[i]
    if kind == "fold":
        return str(it.fold)
    if kind == "split":
        return it.split or "train"
    return it.group


def _describe_set(manifest: Manifest, ds: DuplicateSet, kind: str) -> dict[str, Any]:
    items = [manifest.items[i] for i in ds.files]
    pos = {i: k for k, i in enumerate(ds.files)}
    sides = sorted({_side(manifest, i, kind) for i in ds.files})
    return {
        "exact": ds.exact,
        "files": [{"path": manifest.relpath(it), "label": it.label, "group": it.group, "fold": it.fold,
                   "split": it.split} for it in items],
        "pairs": [{"a": pos[a], "b": pos[b], "ber": ber, "offset_s": off} for a, b, ber, off in ds.pairs],
        "labels": sorted({it.label for it in items}),
        "cross_class": len({it.label for it in items}) > 1,
        "straddles": len(sides) > 1,
        "sides": sides if kind != "group" else len(sides),
    }


def _example(manifest: Manifest, d: dict[str, Any], kind: str) -> str:
    a, b = d["files"][0], d["files"][1]
    where = (lambda f: f["label"]) if d["cross_class"] else (
        (lambda f: f"{kind} {f[kind]}") if kind in ("fold", "split") else (lambda f: f["label"]))
    sign = "=" if d["exact"] else "~"
    return f"{a['path']} [{where(a)}] {sign} {b['path']} [{where(b)}]"


def _class_counts(manifest: Manifest, store: PreparedStore) -> dict[str, dict[str, Any]]:
    sr = store.sample_rate
    lengths = store.lengths
    out: dict[str, dict[str, Any]] = {}
    labels = manifest.labels
    for label in labels:
        out[label] = {"files": 0, "usable": 0, "skipped": 0, "duration_s": 0.0, "mean_duration_s": None,
                      "min_duration_s": None, "max_duration_s": None}
    durs: dict[str, list[float]] = defaultdict(list)
    for i, it in enumerate(manifest.items):
        c = out[it.label]
        c["files"] += 1
        if store.files[i].ok:
            c["usable"] += 1
            durs[it.label].append(float(lengths[i]) / sr)
        else:
            c["skipped"] += 1
    for label, d in durs.items():
        out[label].update(duration_s=round(sum(d), 3), mean_duration_s=round(float(np.mean(d)), 3),
                          min_duration_s=round(min(d), 3), max_duration_s=round(max(d), 3))
    return out


def _balance_warnings(classes: dict[str, dict[str, Any]]) -> list[str]:
    warnings = []
    usable = {c: v["usable"] for c, v in classes.items()}
    tiny = sorted(c for c, n in usable.items() if n < 2)
    if tiny:
        warnings.append(f"class{'es' * (len(tiny) > 1)} {', '.join(repr(c) for c in tiny)} "
                        f"{'have' if len(tiny) > 1 else 'has'} fewer than 2 usable files: "
                        "cannot be both trained and tested; add files or drop the class")
    sized = {c: n for c, n in usable.items() if n > 0}
    if len(sized) >= 2:
        hi, lo = max(sized, key=sized.get), min(sized, key=sized.get)  # type: ignore[arg-type]
        secs = {c: classes[c]["duration_s"] for c in sized}
        shi, slo = max(secs, key=secs.get), min(secs, key=secs.get)  # type: ignore[arg-type]
        ratio, sratio = sized[hi] / sized[lo], secs[shi] / max(secs[slo], 1e-9)
        if ratio >= IMBALANCE_RATIO or sratio >= IMBALANCE_RATIO:
            warnings.append(
                f"class imbalance: {hi!r} has {sized[hi]} usable files, {lo!r} {sized[lo]} ({ratio:.1f}x); "
                f"by duration {shi!r} {secs[shi] / 60:.1f} min, {slo!r} {secs[slo] / 60:.1f} min "
                f"({sratio:.1f}x). Read macro-F1 rather than accuracy, and consider "
                "--set train.class_balance=sampler (or weights)")
    return warnings


def _duplicate_warnings(manifest: Manifest, sets: list[dict[str, Any]], kind: str) -> list[str]:
    warnings = []
    for exact in (True, False):
        what = "identical files" if exact else "near-identical recordings (the same sound re-encoded, " \
                                               "gain-changed or shifted)"
        cross = [d for d in sets if d["exact"] == exact and d["cross_class"]]
        if cross:
            eg = "; ".join(_example(manifest, d, kind) for d in cross[:_EXAMPLES])
            warnings.append(f"{len(cross)} set(s) of {what} carry different labels (e.g. {eg}): at least one "
                            "label is wrong; relabel or remove the copies")
    leaky = [d for d in sets if d["straddles"]]
    if leaky:
        eg = "; ".join(_example(manifest, d, kind) for d in leaky[:_EXAMPLES])
        n_exact = sum(d["exact"] for d in leaky)
        head = f"{len(leaky)} set(s) of duplicates ({n_exact} exact, {len(leaky) - n_exact} near)"
        if kind == "fold":
            warnings.append(f"{head} straddle the predefined folds (e.g. {eg}): copies are tested on what "
                            "trained them, so scores are inflated; put each set in one fold or remove the "
                            "copies")
        elif kind == "split":
            warnings.append(f"{head} straddle the split column (e.g. {eg}): scores are inflated; put each "
                            "set on one side or remove the copies")
        else:
            warnings.append(f"{head} are in different groups ({manifest.group_by}), so a split can put "
                            f"copies on both sides and inflate the scores (e.g. {eg}); give each set one "
                            "group (a group column in the manifest and --group) or remove the copies")
    return warnings


def analyse(manifest: Manifest, store: PreparedStore, show_progress: bool = False) -> dict[str, Any]:
    """Classes, duplicates and warnings from a manifest and its prepared store (nothing is decoded)."""
    started = time.perf_counter()
    fps = store_fingerprints(store, show_progress)
    kind = _side_kind(manifest)
    sets = [_describe_set(manifest, d, kind) for d in find_duplicates(store, fps)]
    classes = _class_counts(manifest, store)
    warnings = _duplicate_warnings(manifest, sets, kind) + _balance_warnings(classes)
    return {
        "classes": classes, "split_by": kind if kind != "group" else f"group ({manifest.group_by})",
        "exact_duplicates": [d for d in sets if d["exact"]],
        "near_duplicates": [d for d in sets if not d["exact"]],
        "warnings": warnings, "analysis_seconds": round(time.perf_counter() - started, 3),
    }


def quick_warnings(manifest: Manifest, store: PreparedStore) -> list[str]:
    """The audit's warnings (duplicates across classes or splits, imbalance) from a prepared store."""
    return analyse(manifest, store)["warnings"]


# ------------------------------------------------------------------------------------------ full audit


# ------------------------------------------------------------------------------------------ writing


def write_audit(report: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """Write ``audit.json``, ``audit.md`` and ``class_balance.png`` into ``out`` (atomically)."""
    out = Path(out)
    paths = {"json": out / "audit.json", "markdown": out / "audit.md", "plot": out / "class_balance.png"}
    atomic_write_json(paths["json"], report)
    plot_class_balance(report["classes"], paths["plot"])
    atomic_write_text(paths["markdown"], to_markdown(report))
    return paths


def plot_class_balance(classes: dict[str, dict[str, Any]], path: Path) -> None:
    """Two bar charts: files per class (usable and skipped) and minutes of usable audio per class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(classes)
    y = np.arange(len(names))
    usable = [classes[c]["usable"] for c in names]
    skipped = [classes[c]["skipped"] for c in names]
    minutes = [classes[c]["duration_s"] / 60 for c in names]
    fig, (ax_n, ax_t) = plt.subplots(1, 2, figsize=(10, 0.35 * len(names) + 1.8), sharey=True)
    ax_n.barh(y, usable, color="#3b7dd8", label="usable")
    ax_n.barh(y, skipped, left=usable, color="#d8623b", label="skipped")
    ax_n.set_yticks(y, names)
    ax_n.invert_yaxis()
    ax_n.set_xlabel("files")
    ax_n.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2, frameon=False)
    ax_t.barh(y, minutes, color="#5aa469")
    ax_t.set_xlabel("minutes of usable audio")
    for ax in (ax_n, ax_t):
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Class balance")
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)


def _fmt_s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def to_markdown(r: dict[str, Any]) -> str:
    """The report as a page a person reads."""
    lines = [f"# Audit of `{r['data']}`", "",
             f"- {r['layout']} layout, {r['n_files']} files, {r['n_classes']} classes, "
             f"{r['n_usable']} usable ({r['usable_hours'] * 60:.1f} min decoded at {r['decoded_at_hz']} Hz)",
             f"- splits follow: {r['split_by']}",
             f"- formats: {', '.join(f'{k} {v}' for k, v in r['formats'].items())}; sample rates: "
             f"{', '.join(f'{k} Hz {v}' for k, v in r['sample_rates'].items()) or '-'}; channels: "
             f"{', '.join(f'{k}ch {v}' for k, v in r['channels'].items()) or '-'}",
             f"- exact duplicate sets: {len(r['exact_duplicates'])}; near-duplicate sets: "
             f"{len(r['near_duplicates'])}",
             f"- audit took {r['seconds']:.1f} s", "", "## Warnings", ""]
    lines += [f"- {w}" for w in r["warnings"]] or ["None."]
    lines += ["", "## Classes", "", "| class | files | usable | skipped | minutes | mean s | min s | max s |",
              "|---|---|---|---|---|---|---|---|"]
    for c, v in r["classes"].items():
        lines.append(f"| {c} | {v['files']} | {v['usable']} | {v['skipped']} | {v['duration_s'] / 60:.2f} | "
                     f"{_fmt_s(v['mean_duration_s'])} | {_fmt_s(v['min_duration_s'])} | "
                     f"{_fmt_s(v['max_duration_s'])} |")
    lines += ["", "![class balance](class_balance.png)", ""]
    if r["unreadable"]:
        lines += ["## Files that cannot be used", "", "| file | reason |", "|---|---|"]
        lines += [f"| {u['path']} | {u['reason']} |" for u in r["unreadable"]]
        lines.append("")
    for title, key in (("Exact duplicates (identical decoded audio)", "exact_duplicates"),
                       ("Near-duplicates (fingerprint match)", "near_duplicates")):
        if not r[key]:
            continue
        lines += [f"## {title}", "", "| set | files (label, fold/split/group) | crosses classes | straddles "
                  "a split | bit error rate, offset |", "|---|---|---|---|---|"]
        for k, d in enumerate(r[key], start=1):
            files = "<br>".join(f"{f['path']} ({f['label']}, {f['fold'] or f['split'] or f['group']})"
                                for f in d["files"])
            bers = ", ".join("identical" if p["ber"] is None else f"{p['ber']:.2f} at {p['offset_s']:+.2f} s"
                             for p in d["pairs"])
            lines.append(f"| {k} | {files} | {'yes' if d['cross_class'] else 'no'} | "
                         f"{'yes' if d['straddles'] else 'no'} | {bers} |")
        lines.append("")
    return "\n".join(lines)
