"""The prepared store: every file decoded and resampled once, kept on disk, memory-mapped for training.

Layout of a store folder (``<cache>/stores/<key>/``)::

    audio.f32      all files' samples, float32, end to end (memory-mapped when read)
    index.json     per file: offset, length, or the reason it was skipped; written last, atomically
    journal.jsonl  only while preparing: one committed line per file, for resuming

The key hashes the audio settings and each file's identity (path, size, modification time), so a later
run with the same data and settings reuses the store, and any change makes a new one. Segments are not
stored: they are views (file, start) into this audio, so any segment setting reuses the same store.

Preparation decodes in parallel over the cores, commits in batches (data flushed before its journal
lines), and after a kill resumes from the last committed file. The finished ``audio.f32`` and
``index.json`` are byte-identical to those of an uninterrupted run.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import multiprocessing as mp
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio.io import CHANNEL_INDEX, load_audio
from ..config import AudioConfig
from ..errors import AudioDecodeError, ConfigError, DatasetError
from ..utils.files import atomic_write_json, atomic_write_text, read_json
from ..utils.progress import progress
from .manifest import Manifest

log = logging.getLogger(__name__)

STORE_VERSION = 2  # 2: truncated files (far fewer frames than their header says) are skipped
_COMMIT_EVERY = 64


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where prepared stores live: ``cache_dir``, else ``$EARMARK_CACHE``, else ``~/.cache/earmark``."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    env = os.environ.get("EARMARK_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "earmark"


def _file_identity(path: Path) -> list:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def store_key(paths: list[Path], audio: AudioConfig) -> str:
    """Hash of the decoding settings and each file's identity."""
    h = hashlib.sha256()
    settings = {"version": STORE_VERSION, **audio.model_dump(mode="json")}
    if settings["channels"] == "mix":  # the default: stores prepared before the setting existed stay valid
        del settings["channels"]
    else:  # left/right hear the same as 0/1: one store
        settings["channels"] = CHANNEL_INDEX.get(settings["channels"], settings["channels"])
    h.update(json.dumps(settings, sort_keys=True).encode())
    for p in paths:
        try:
            ident = _file_identity(p)
        except OSError:
            ident = [str(p), -1, -1]
        h.update(json.dumps(ident).encode())
    return h.hexdigest()[:24]


@dataclass(frozen=True)
class StoredFile:
    path: str
    offset: int
    length: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def decode_for_store(path: str, audio: AudioConfig) -> np.ndarray:
    """Decode, check and (optionally) separate one file, as the store keeps it."""
    wave = load_audio(path, audio.sample_rate, max_duration_s=audio.max_duration_s,
                      min_duration_s=audio.min_duration_s, reject_silent=True, channels=audio.channels)
    if audio.separation != "none":
        from ..audio.separate import separate_vocals

        wave = separate_vocals(wave, audio.sample_rate, method=audio.separation,
                               checkpoint=audio.demucs_checkpoint)
        if not np.any(np.abs(wave) > 1e-7):
            raise AudioDecodeError(path, f"silent after vocal separation ({audio.separation}): nothing but "
                                         "accompaniment was found")
    return wave


def _decode_job(args: tuple[int, str, dict]) -> tuple[int, np.ndarray | None, str | None]:
    i, path, audio_settings = args
    audio = AudioConfig.model_validate(audio_settings)
    try:
        return i, decode_for_store(path, audio), None
    except AudioDecodeError as exc:
        return i, None, exc.reason
    except MemoryError:
        return i, None, "out of memory while decoding (file too long? set audio.max_duration_s)"
    except ConfigError:  # a setting that fails every file (e.g. separation=demucs without demucs): stop
        raise
    except Exception as exc:  # a broken file must never take the whole preparation down
        return i, None, f"unexpected {type(exc).__name__}: {str(exc)[:200]}"


class PreparedStore:
    """Read access to a finished store. ``waveform(i)`` is a zero-copy view of file ``i``'s samples."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        index = read_json(self.folder / "index.json")
        self.sample_rate: int = index["sample_rate"]
        self.files = [StoredFile(**f) for f in index["files"]]
        total = index["total_samples"]
        data = self.folder / "audio.f32"
        self._audio = (np.memmap(data, dtype=np.float32, mode="r", shape=(total,)) if total
                       else np.zeros(0, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.files)

    @property
    def ok(self) -> np.ndarray:
        return np.array([f.ok for f in self.files], dtype=bool)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([f.length for f in self.files], dtype=np.int64)

    def waveform(self, i: int) -> np.ndarray:
        f = self.files[i]
        if not f.ok:
            raise DatasetError(f"{f.path} was skipped during preparation: {f.error}")
        return self._audio[f.offset: f.offset + f.length]

    def skipped(self) -> list[tuple[str, str]]:
        return [(f.path, f.error or "") for f in self.files if not f.ok]


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read_journal(path: Path) -> list[StoredFile]:
    if not path.exists():
        return []
    entries = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break  # a half-written last line: not committed
            try:
                entries.append(StoredFile(**json.loads(line)))
            except (json.JSONDecodeError, TypeError):
                break
    return entries


def prepare_store(
    paths: list[Path],
    audio: AudioConfig,
    cache_dir: str | os.PathLike | None = None,
    workers: int | None = None,
    show_progress: bool = True,
) -> PreparedStore:
    """Decode ``paths`` into a store (or reuse the finished one with the same key) and open it."""
    folder = cache_root(cache_dir) / "stores" / store_key(paths, audio)
    if (folder / "index.json").is_file():
        return PreparedStore(folder)
    with _locked(folder):
        if not (folder / "index.json").is_file():  # another process may have finished it meanwhile
            _prepare(folder, paths, audio, workers, show_progress)
    return PreparedStore(folder)


def _prepare(folder: Path, paths: list[Path], audio: AudioConfig, workers: int | None, show: bool) -> None:
    data_path, journal_path = folder / "audio.f32", folder / "journal.jsonl"
    done = _read_journal(journal_path)
    offset = done[-1].offset + done[-1].length if done else 0
    # Drop anything written after the last committed file (a kill between data and journal).
    with open(data_path, "ab"):
        pass
    os.truncate(data_path, offset * 4)
    # Rewrite the journal with its committed lines only (drops a half-written last line).
    atomic_write_text(journal_path, "".join(json.dumps(e.__dict__) + "\n" for e in done))
    if done:
        log.info("resuming preparation at file %d of %d", len(done), len(paths))
    settings = audio.model_dump(mode="json")
    jobs = [(i, str(paths[i]), settings) for i in range(len(done), len(paths))]
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    with open(data_path, "ab") as data, open(journal_path, "a", encoding="utf-8") as journal:
        pending: list[StoredFile] = []

        def commit() -> None:
            data.flush()
            os.fsync(data.fileno())
            journal.write("".join(json.dumps(e.__dict__) + "\n" for e in pending))
            journal.flush()
            os.fsync(journal.fileno())
            pending.clear()

        with progress(total=len(paths), initial=len(done), desc="prepare", unit="file", disable=not show) as bar:
            for i, wave, error in _run_jobs(jobs, n_workers):
                if error is None:
                    assert wave is not None
                    data.write(np.ascontiguousarray(wave, dtype="<f4").tobytes())
                    pending.append(StoredFile(str(paths[i]), offset, int(wave.size)))
                    offset += int(wave.size)
                else:
                    pending.append(StoredFile(str(paths[i]), offset, 0, error))
                if len(pending) >= _COMMIT_EVERY:
                    commit()
                bar.update(1)
            commit()
    files = _read_journal(journal_path)
    if len(files) != len(paths):
        raise DatasetError(f"preparation of {folder} is inconsistent ({len(files)} of {len(paths)} files)")
    atomic_write_json(folder / "index.json", {
        "version": STORE_VERSION, "sample_rate": audio.sample_rate, "total_samples": offset,
        "audio": settings, "files": [f.__dict__ for f in files],
    })
    journal_path.unlink()


def _run_jobs(jobs: list[tuple[int, str, dict]], workers: int) -> Iterator[tuple[int, np.ndarray | None, str | None]]:
    if workers <= 1 or len(jobs) < 4:
        yield from map(_decode_job, jobs)
        return
    ctx = mp.get_context("fork" if hasattr(os, "fork") else "spawn")
    with ctx.Pool(workers) as pool:
        yield from pool.imap(_decode_job, jobs, chunksize=4)


def prepare_manifest(
    manifest: Manifest, audio: AudioConfig, cache_dir: str | None = None, workers: int | None = None,
    show_progress: bool = True,
) -> PreparedStore:
    """Prepare the store of every file in a manifest (same order as ``manifest.items``)."""
    return prepare_store([it.path for it in manifest.items], audio, cache_dir, workers, show_progress)
