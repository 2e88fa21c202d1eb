"""Find the labeled audio in a folder: a manifest, a known published layout, or class-per-folder.

Recognised, in this order:

====================  =====================================================================
``manifest``          ``DATA/manifest.csv`` (or DATA is a CSV): ``path,label`` and optional
                      ``group``, ``fold``, ``split`` and any other columns (``--group COL``)
``esc50``             ESC-50 / ESC-10: ``meta/esc50.csv`` or ``meta/esc10.csv`` + ``audio/``
``urbansound8k``      ``metadata/UrbanSound8K.csv`` + ``audio/fold1..10/``
``speech_commands``   word folders + ``validation_list.txt`` / ``testing_list.txt``;
                      speaker from ``{speaker}_nohash_{n}.wav``
``fsdd``              ``{digit}_{speaker}_{index}.wav`` (in DATA or ``DATA/recordings``);
                      official test split = index 0-4, grouped by speaker
``gtzan``             genre folders (``blues``, ``classical``, ...), optionally under ``genres*/``
``folders``           any class-per-folder tree (label = first-level folder name)
====================  =====================================================================
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

from ..audio.io import AUDIO_EXTENSIONS
from ..errors import DatasetError
from .manifest import Item, Manifest

GTZAN_GENRES = {"blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"}
_FSDD_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")
_SPLIT_NAMES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test", "eval": "test", "evaluation": "test",
}


def is_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")


def normalise_split(value: str | None, where: str) -> str | None:
    if value is None or str(value).strip() == "":
        return None
    key = str(value).strip().lower()
    if key not in _SPLIT_NAMES:
        raise DatasetError(f"{where}: unknown split {value!r}; use train, val or test")
    return _SPLIT_NAMES[key]


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in csv.DictReader(f)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None


def _finish(items: list[Item], missing: list[tuple[str, str]], root: Path, layout: str, group_by: str) -> Manifest:
    kept = []
    for it in items:
        if it.path.is_file():
            kept.append(it)
        else:
            missing.append((str(it.path), "listed in the manifest but the file does not exist"))
    if not kept:
        raise DatasetError(f"{root}: found no usable audio files ({layout} layout)")
    return Manifest(kept, root, layout, group_by, missing)


def from_manifest(csv_path: Path, group: str | None = None) -> Manifest:
    root = csv_path.parent
    rows = _read_csv(csv_path)
    if not rows:
        raise DatasetError(f"{csv_path} has no rows")
    cols = set(rows[0])
    if not {"path", "label"} <= cols:
        raise DatasetError(f"{csv_path} needs the columns path and label; it has {', '.join(sorted(cols))}")
    items, missing = [], []
    for n, row in enumerate(rows, start=2):
        if not row["path"]:
            missing.append((f"{csv_path}:{n}", "empty path"))
            continue
        if not row["label"]:
            missing.append((row["path"], f"{csv_path}:{n} has no label"))
            continue
        p = Path(row["path"])
        p = p if p.is_absolute() else root / p
        items.append(Item(
            path=p, label=row["label"], group=row.get("group") or str(p),
            fold=row.get("fold") or None,
            split=normalise_split(row.get("split"), f"{csv_path}:{n}"),
            meta=row,
        ))
    manifest = _finish(items, missing, root, "manifest", "group" if "group" in cols else "file")
    return manifest.regroup(group) if group else manifest


def from_esc50(root: Path, meta_csv: Path) -> Manifest:
    rows = _read_csv(meta_csv)
    audio_dir = root / "audio"
    items = [Item(
        path=audio_dir / r["filename"], label=r["category"], group=f"src_file={r.get('src_file', r['filename'])}",
        fold=r["fold"], meta=r) for r in rows]
    return _finish(items, [], root, "esc50", "src_file")


def from_urbansound8k(root: Path, meta_csv: Path) -> Manifest:
    rows = _read_csv(meta_csv)
    items = [Item(
        path=root / "audio" / f"fold{r['fold']}" / r["slice_file_name"], label=r["class"],
        group=f"fsID={r['fsID']}", fold=r["fold"], meta=r) for r in rows]
    return _finish(items, [], root, "urbansound8k", "fsID")


def from_speech_commands(root: Path) -> Manifest:
    def read_list(name: str) -> set[str]:
        p = root / name
        return set(p.read_text().split()) if p.is_file() else set()

    val, test = read_list("validation_list.txt"), read_list("testing_list.txt")
    items = []
    for word_dir in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(("_", "."))):
        for f in sorted(word_dir.glob("*.wav")):
            rel = f"{word_dir.name}/{f.name}"
            speaker = f.name.split("_nohash_")[0] if "_nohash_" in f.name else f.stem
            split = "test" if rel in test else "val" if rel in val else "train"
            items.append(Item(f, word_dir.name, f"speaker={speaker}", split=split,
                              meta={"speaker": speaker, "path": rel}))
    return _finish(items, [], root, "speech_commands", "speaker")


def from_fsdd(root: Path, folder: Path) -> Manifest:
    items = []
    for f in sorted(folder.glob("*.wav")):
        m = _FSDD_NAME.match(f.name)
        if m:
            digit, speaker, index = m.groups()
            items.append(Item(f, digit, f"speaker={speaker}", split="test" if int(index) < 5 else "train",
                              meta={"speaker": speaker, "index": index}))
    return _finish(items, [], root, "fsdd", "speaker")


def from_folders(root: Path, layout: str = "folders") -> Manifest:
    items = []
    for class_dir in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith((".", "_"))):
        for f in sorted(p for p in class_dir.rglob("*") if p.is_file() and is_audio(p)):
            items.append(Item(f, class_dir.name, str(f), meta={"path": str(f.relative_to(root))}))
    if not items:
        raise DatasetError(
            f"{root}: no audio found. Expected class folders (DATA/<label>/*.wav), a manifest.csv with "
            "path,label columns, or a known dataset layout (ESC-50, UrbanSound8K, GTZAN, Speech Commands, FSDD)"
        )
    return _finish(items, [], root, layout, "file")


def discover(data: str | Path, group: str | None = None) -> Manifest:
    """Build the manifest of a dataset folder (or manifest CSV), recognising its layout."""
    root = Path(data).expanduser()
    if not root.exists():
        raise DatasetError(f"{root} does not exist")
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise DatasetError(f"{root} is a file; give a folder or a manifest .csv")
        return from_manifest(root.resolve(), group)
    root = root.resolve()
    manifest: Manifest
    if (root / "manifest.csv").is_file():
        return from_manifest(root / "manifest.csv", group)
    for name in ("esc50.csv", "esc10.csv"):
        if (root / "meta" / name).is_file() and (root / "audio").is_dir():
            manifest = from_esc50(root, root / "meta" / name)
            return manifest.regroup(group) if group else manifest
    if (root / "metadata" / "UrbanSound8K.csv").is_file():
        manifest = from_urbansound8k(root, root / "metadata" / "UrbanSound8K.csv")
    elif (root / "validation_list.txt").is_file() or (root / "testing_list.txt").is_file():
        manifest = from_speech_commands(root)
    elif _looks_fsdd(root / "recordings") or _looks_fsdd(root):
        manifest = from_fsdd(root, root / "recordings" if _looks_fsdd(root / "recordings") else root)
    else:
        gtzan = _gtzan_root(root)
        manifest = from_folders(gtzan, "gtzan") if gtzan else from_folders(root)
    return manifest.regroup(group) if group else manifest


def _looks_fsdd(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    names = [p.name for p in folder.glob("*.wav")]
    return len(names) >= 10 and sum(bool(_FSDD_NAME.match(n)) for n in names) >= 0.9 * len(names)


def _gtzan_root(root: Path) -> Path | None:
    for cand in [root, *(d for d in root.iterdir() if d.is_dir() and d.name.lower().startswith("genres"))]:
        subdirs = {d.name.lower() for d in cand.iterdir() if d.is_dir()}
        if len(subdirs & GTZAN_GENRES) >= 5 and subdirs <= GTZAN_GENRES | {"_", ".ipynb_checkpoints"}:
            return cand
    return None
