import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from earmark.audio.io import load_audio
from earmark.config import AudioConfig
from earmark.data.store import prepare_store, store_key

from ..conftest import tone, write_wav


def make_files(folder: Path, n: int, seconds: float = 0.5, sr: int = 22050) -> list[Path]:
    rng = np.random.default_rng(0)
    return [write_wav(folder / f"f{i:04d}.flac", (tone(200 + i, seconds, sr) + 0.01 * rng.standard_normal(
        int(seconds * sr))).astype(np.float32), sr) for i in range(n)]


def test_store_holds_decoded_audio_and_skips_bad_files(tmp_path):
    files = make_files(tmp_path / "a", 5)
    (tmp_path / "a" / "bad.wav").write_bytes(b"RIFF....garbage")
    write_wav(tmp_path / "a" / "silent.wav", np.zeros(8000, np.float32), 16000)
    paths = files + [tmp_path / "a" / "bad.wav", tmp_path / "a" / "silent.wav"]
    audio = AudioConfig(sample_rate=16000)
    store = prepare_store(paths, audio, tmp_path / "cache", workers=2, show_progress=False)
    assert store.ok.tolist() == [True] * 5 + [False, False]
    for i, p in enumerate(files):
        np.testing.assert_array_equal(store.waveform(i), load_audio(p, 16000))
    reasons = dict(store.skipped())
    assert "not readable" in reasons[str(paths[5])] and "silent" in reasons[str(paths[6])]


def test_store_is_reused_and_keyed_by_settings_and_file_identity(tmp_path):
    files = make_files(tmp_path / "a", 3)
    audio = AudioConfig(sample_rate=16000)
    s1 = prepare_store(files, audio, tmp_path / "cache", show_progress=False)
    mtime = (s1.folder / "index.json").stat().st_mtime_ns
    s2 = prepare_store(files, audio, tmp_path / "cache", show_progress=False)
    assert s2.folder == s1.folder and (s2.folder / "index.json").stat().st_mtime_ns == mtime
    assert store_key(files, AudioConfig(sample_rate=8000)) != store_key(files, audio)
    repet = AudioConfig(sample_rate=16000, separation="repet")
    tuned = AudioConfig(sample_rate=16000, separation="repet", separation_options={"min_distance_s": 0.5})
    assert store_key(files, tuned) != store_key(files, repet)  # a separator's settings are decoding settings
    write_wav(files[0], tone(999, 0.7, 22050), 22050)  # the file changed: a new store
    assert store_key(files, audio) != s1.folder.name


def store_files(folder: Path) -> dict[str, bytes]:
    """Every file of a store but its lock: the shards and the index."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def test_killed_preparation_resumes_by_shard_to_byte_identical_store(tmp_path, monkeypatch):
    monkeypatch.setattr("earmark.data.store.SHARD_FILES", 64)  # 400 files: 7 shards
    files = make_files(tmp_path / "data", 400, seconds=2.0, sr=44100)
    listing = tmp_path / "files.json"
    listing.write_text(json.dumps([str(p) for p in files]))
    script = (
        "import json, sys; from pathlib import Path; from earmark.config import AudioConfig;"
        "import earmark.data.store as s; s.SHARD_FILES = 64;"
        f"paths=[Path(p) for p in json.load(open({str(listing)!r}))];"
        "s.prepare_store(paths, AudioConfig(sample_rate=16000), sys.argv[1], workers=1, show_progress=False)"
    )
    cache = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", script, str(cache)])
    finished: list[Path] = []
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:  # kill once two shards are finished, before the end
        finished = sorted(cache.glob("stores/*/shards/*.json"))
        if len(finished) >= 2:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(finished) >= 2, "preparation never finished a shard"
    folder = finished[0].parent.parent
    assert not (folder / "index.json").exists(), "preparation finished before it could be killed"
    kept = {p.name: p.stat().st_mtime_ns for p in (folder / "shards").glob("*.json")}
    resumed = prepare_store(files, AudioConfig(sample_rate=16000), cache, workers=2, show_progress=False)
    clean = prepare_store(files, AudioConfig(sample_rate=16000), tmp_path / "clean", workers=2, show_progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in (folder / "shards").glob("*.json") if p.name in kept} == kept
    assert sorted(store_files(resumed.folder)) == sorted(store_files(clean.folder))
    assert store_files(resumed.folder) == store_files(clean.folder)
    assert len(list((clean.folder / "shards").glob("*.f32"))) == 7
    for i in (0, 63, 64, 399):  # either side of a shard boundary
        np.testing.assert_array_equal(resumed.waveform(i), load_audio(files[i], 16000))


def test_decoding_processes_are_not_forked_from_a_threaded_process(tmp_path: Path):
    """A fork of a process that runs threads (a Ray driver, torch, a server) can inherit a held lock: the
    suite once hung in preparation right after the Ray tests. Workers come from a clean server instead."""
    import threading

    from earmark.data import store as store_mod

    assert store_mod._pool_context().get_start_method() in ("forkserver", "spawn")
    held = threading.Lock()
    held.acquire()  # a lock held while the pool starts, as in a busy process
    waiter = threading.Thread(target=lambda: held.acquire(timeout=30), daemon=True)
    waiter.start()
    try:
        files = make_files(tmp_path, 6)
        st = prepare_store(files, AudioConfig(sample_rate=16000), cache_dir=tmp_path / "cache", workers=2,
                           show_progress=False)
        assert int(st.ok.sum()) == len(files)
    finally:
        held.release()


def test_a_script_without_a_main_guard_prepares_once_and_does_not_hang(tmp_path: Path):
    """Decoding processes must not run the caller's script again (spawn and forkserver import __main__):
    a top-level ``earmark.train(...)`` in an unguarded script once waited forever for its own store."""
    files = make_files(tmp_path / "audio", 8)
    script = tmp_path / "unguarded.py"
    script.write_text(
        "from pathlib import Path\n"
        "from earmark.config import AudioConfig\n"
        "from earmark.data.store import prepare_store\n"
        "print('started', flush=True)\n"
        f"st = prepare_store([Path(p) for p in {[str(f) for f in files]!r}], AudioConfig(sample_rate=8000), "
        f"cache_dir={str(tmp_path / 'cache')!r}, workers=2, show_progress=False)\n"
        "print('done', int(st.ok.sum()), flush=True)\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["started", "done", "8"]  # once, in the script's own process only
