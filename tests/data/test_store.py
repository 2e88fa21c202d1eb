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
    write_wav(files[0], tone(999, 0.7, 22050), 22050)  # the file changed: a new store
    assert store_key(files, audio) != s1.folder.name


def test_killed_preparation_resumes_to_byte_identical_store(tmp_path):
    files = make_files(tmp_path / "data", 400, seconds=2.0, sr=44100)
    listing = tmp_path / "files.json"
    listing.write_text(json.dumps([str(p) for p in files]))
    script = (
        "import json, sys; from pathlib import Path; from earmark.config import AudioConfig;"
        "from earmark.data.store import prepare_store;"
        f"paths=[Path(p) for p in json.load(open({str(listing)!r}))];"
        "prepare_store(paths, AudioConfig(sample_rate=16000), sys.argv[1], workers=1, show_progress=False)"
    )
    cache = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", script, str(cache)])
    journal = None
    deadline = time.time() + 120
    while time.time() < deadline:  # kill once some files are committed, before the end
        found = list(cache.glob("stores/*/journal.jsonl"))
        if found and found[0].stat().st_size > 0 and len(found[0].read_text().splitlines()) >= 64:
            journal = found[0]
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert journal is not None, "preparation never committed a batch"
    assert not (journal.parent / "index.json").exists(), "preparation finished before it could be killed"
    resumed = prepare_store(files, AudioConfig(sample_rate=16000), cache, workers=2, show_progress=False)
    clean = prepare_store(files, AudioConfig(sample_rate=16000), tmp_path / "clean", workers=2, show_progress=False)
    for name in ("audio.f32", "index.json"):
        assert (resumed.folder / name).read_bytes() == (clean.folder / name).read_bytes()
    assert not (resumed.folder / "journal.jsonl").exists()
