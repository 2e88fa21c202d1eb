"""The prepared store: every file decoded and resampled once, kept on disk, memory-mapped for training.

Layout of a store folder (``<cache>/stores/<key>/``)::

    shards/00000.f32   the samples of files 0..SHARD_FILES-1 (manifest order), float32, end to end
    shards/00000.json  per file of that shard: path, offset in the shard, length, or why it was skipped;
                       written after its ``.f32``, so its presence means the shard is finished
    index.json         every shard's sample count and every file's shard, offset, length or skip reason;
                       written last, atomically, once all shards are finished

Shards are fixed runs of ``SHARD_FILES`` files in manifest order, so their boundaries depend on the file
list only, never on which worker or engine decoded them: the local engine (this machine's cores) and the
Ray engine (one task per shard on a cluster's workers, writing to a folder every node can read) make the
same files, byte for byte. Nothing in them names a time or a host.

The key hashes the audio settings, the shard size and each file's identity (path, size, modification
time), so a later run with the same data and settings reuses the store, and any change makes a new one.
Segments are not stored: they are views (file, start) into this audio, so any segment setting reuses
the same store. A killed preparation resumes by shard: a finished shard is kept, any other is redone.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import multiprocessing as mp
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..audio.io import CHANNEL_INDEX, load_audio
from ..config import AudioConfig
from ..errors import AudioDecodeError, ConfigError, DatasetError
from ..utils.files import atomic_write_json, read_json
from .manifest import Manifest

if TYPE_CHECKING:  # pragma: no cover
    from ..engines import Engine

log = logging.getLogger(__name__)

STORE_VERSION = 3  # 2: truncated files are skipped; 3: sharded, the same from every engine
SHARD_FILES = 256  # files per shard: part of the key, so changing it makes a new store


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
    """Hash of the decoding settings, the shard size and each file's identity."""
    h = hashlib.sha256()
    settings = {"version": STORE_VERSION, "shard_files": SHARD_FILES, **audio.model_dump(mode="json")}
    if settings["channels"] == "mix":  # the default: the key of a store is that of before the setting existed
        del settings["channels"]
    else:  # left/right hear the same as 0/1: one store
        settings["channels"] = CHANNEL_INDEX.get(settings["channels"], settings["channels"])
    if not settings["separation_options"]:  # likewise: no options, the key of before the setting existed
        del settings["separation_options"]
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
    offset: int  # within its shard
    length: int
    error: str | None = None
    shard: int = 0

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
                               checkpoint=audio.demucs_checkpoint, options=audio.separation_options)
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
        self._shard_samples: list[int] = list(index["shard_samples"])
        self._shards: dict[int, np.ndarray] = {}  # memory maps, opened on first use

    def __len__(self) -> int:
        return len(self.files)

    @property
    def ok(self) -> np.ndarray:
        return np.array([f.ok for f in self.files], dtype=bool)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([f.length for f in self.files], dtype=np.int64)

    def _shard(self, k: int) -> np.ndarray:
        if k not in self._shards:
            n = self._shard_samples[k]
            self._shards[k] = (np.memmap(shard_path(self.folder, k, ".f32"), dtype=np.float32, mode="r",
                                         shape=(n,)) if n else np.zeros(0, dtype=np.float32))
        return self._shards[k]

    def waveform(self, i: int) -> np.ndarray:
        f = self.files[i]
        if not f.ok:
            raise DatasetError(f"{f.path} was skipped during preparation: {f.error}")
        return self._shard(f.shard)[f.offset: f.offset + f.length]

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


# ------------------------------------------------------------------------------------------------ shards


def shard_ranges(n_files: int) -> list[range]:
    """The files of each shard: fixed runs of ``SHARD_FILES`` in manifest order."""
    return [range(s, min(s + SHARD_FILES, n_files)) for s in range(0, n_files, SHARD_FILES)]


def shard_path(folder: str | Path, shard: int, suffix: str) -> Path:
    return Path(folder) / "shards" / f"{shard:05d}{suffix}"


def shard_finished(folder: str | Path, shard: int) -> bool:
    """True when the shard's index is written and its data file has the size that index says."""
    meta, data = shard_path(folder, shard, ".json"), shard_path(folder, shard, ".f32")
    if not (meta.is_file() and data.is_file()):
        return False
    try:
        return data.stat().st_size == 4 * int(read_json(meta)["samples"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def write_shard(folder: str, shard: int, paths: list[str], audio_settings: dict[str, Any],
                workers: int = 1) -> dict[str, int]:
    """Decode one shard's files (over ``workers`` processes) and write its data, then its index.

    Module-level and given plain arguments, so an engine can run it anywhere that sees ``folder``
    (a Ray task on another node writes the shard to the shared folder itself)."""
    data = shard_path(folder, shard, ".f32")
    data.parent.mkdir(parents=True, exist_ok=True)
    part = data.with_name(f"{data.name}.part{os.getpid()}")
    entries: list[dict[str, Any]] = []
    offset = 0
    jobs = [(i, p, audio_settings) for i, p in enumerate(paths)]
    with open(part, "wb") as out:
        for i, wave, error in _run_jobs(jobs, workers):
            if error is None:
                assert wave is not None
                out.write(np.ascontiguousarray(wave, dtype="<f4").tobytes())
                entries.append({"path": paths[i], "offset": offset, "length": int(wave.size), "error": None})
                offset += int(wave.size)
            else:
                entries.append({"path": paths[i], "offset": offset, "length": 0, "error": error})
        out.flush()
        os.fsync(out.fileno())
    os.replace(part, data)
    atomic_write_json(shard_path(folder, shard, ".json"), {"samples": offset, "files": entries})
    return {"shard": shard, "samples": offset, "skipped": sum(e["error"] is not None for e in entries)}


def _pool_context() -> Any:
    """Decoding processes started from a clean server (forkserver), never forked from this process: a fork of
    a process that runs threads (torch, Ray, a web server) can inherit a lock held by one of them and hang."""
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])  # workers start with the decoder already imported
        return ctx
    return mp.get_context("spawn")


@contextlib.contextmanager
def _main_not_rerun() -> Iterator[None]:
    """Start processes without running the caller's script again in each of them.

    A forkserver or spawned child imports ``__main__`` by default, so a user's script that calls
    ``earmark.train`` at top level (no ``if __name__ == "__main__":`` guard) would start a second training in
    every decoding process and wait forever for the store it is preparing. The decoding job lives in this
    module and needs nothing from ``__main__``: while the pool starts, ``__main__`` does not name its file.
    """
    main = sys.modules.get("__main__")
    saved = {k: getattr(main, k) for k in ("__file__", "__spec__") if main is not None and hasattr(main, k)}
    try:
        if main is not None and saved:
            main.__spec__ = None
            if "__file__" in saved:
                del main.__file__
        yield
    finally:
        for k, v in saved.items():
            setattr(main, k, v)


def _run_jobs(jobs: list[tuple[int, str, dict]], workers: int) -> Iterator[tuple[int, np.ndarray | None, str | None]]:
    if workers <= 1 or len(jobs) < 4:
        yield from map(_decode_job, jobs)
        return
    with _main_not_rerun():
        pool = _pool_context().Pool(min(workers, len(jobs)))  # the workers start here
    with pool:
        yield from pool.imap(_decode_job, jobs, chunksize=4)


def _write_index(folder: Path, n_shards: int, n_files: int, audio: AudioConfig) -> None:
    files, shard_samples = [], []
    for k in range(n_shards):
        meta = read_json(shard_path(folder, k, ".json"))
        shard_samples.append(int(meta["samples"]))
        files += [{**f, "shard": k} for f in meta["files"]]
    if len(files) != n_files:
        raise DatasetError(f"preparation of {folder} is inconsistent ({len(files)} of {n_files} files)")
    atomic_write_json(folder / "index.json", {
        "version": STORE_VERSION, "sample_rate": audio.sample_rate, "shard_files": SHARD_FILES,
        "total_samples": sum(shard_samples), "shard_samples": shard_samples,
        "audio": audio.model_dump(mode="json"), "files": files,
    })


def _remove_partial(folder: Path) -> None:
    for part in (folder / "shards").glob("*.part*"):
        part.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------- prepare


def prepare_store(
    paths: list[Path],
    audio: AudioConfig,
    cache_dir: str | os.PathLike | None = None,
    workers: int | None = None,
    show_progress: bool = True,
    engine: Engine | None = None,
) -> PreparedStore:
    """Decode ``paths`` into a store (or reuse the finished one with the same key) and open it.

    ``engine`` runs the shards: the local engine (default) one after another, each decoded over
    ``workers`` processes; the Ray engine as one task per shard on the cluster's workers."""
    folder = cache_root(cache_dir) / "stores" / store_key(paths, audio)
    if (folder / "index.json").is_file():
        return PreparedStore(folder)
    with _locked(folder):
        if not (folder / "index.json").is_file():  # another process may have finished it meanwhile
            _prepare(folder, paths, audio, workers, show_progress, engine)
    return PreparedStore(folder)


def _prepare(folder: Path, paths: list[Path], audio: AudioConfig, workers: int | None, show: bool,
             engine: Engine | None) -> None:
    from ..engines import LocalEngine, failure_lines

    engine = engine or LocalEngine()
    _remove_partial(folder)  # from a killed run: only finished shards are kept
    shards = shard_ranges(len(paths))
    todo = [k for k in range(len(shards)) if not shard_finished(folder, k)]
    if len(todo) < len(shards):
        log.info("resuming preparation: %d of %d shards already finished", len(shards) - len(todo), len(shards))
    settings = audio.model_dump(mode="json")
    per_task = 1 if engine.name == "ray" else max(1, workers or os.cpu_count() or 1)
    tasks = [(str(folder), k, [str(paths[i]) for i in shards[k]], settings, per_task) for k in todo]
    outcomes = engine.map(write_shard, tasks, desc="prepare", unit="file", weights=[len(t[2]) for t in tasks],
                          initial=len(paths) - sum(len(t[2]) for t in tasks), show=show)
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise DatasetError(f"preparation of {folder}: {len(failed)} shard(s) failed twice:\n"
                           + failure_lines([(f"shard {o.task[1]}", o.error) for o in failed])
                           + "\nrun the same command again to redo only the unfinished shards")
    _write_index(folder, len(shards), len(paths), audio)
    _remove_partial(folder)


def prepare_manifest(
    manifest: Manifest, audio: AudioConfig, cache_dir: str | None = None, workers: int | None = None,
    show_progress: bool = True, engine: Engine | None = None,
) -> PreparedStore:
    """Prepare the store of every file in a manifest (same order as ``manifest.items``)."""
    return prepare_store([it.path for it in manifest.items], audio, cache_dir, workers, show_progress, engine)
