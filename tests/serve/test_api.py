"""The HTTP API with real uploads: good files (multipart and raw), and every kind of bad one."""
from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from earmark.features.fbank import num_frames
from earmark.inference.predictor import Predictor
from earmark.serve.app import ServeSettings, create_app
from earmark.serve.upload import clean_filename, sniff_extension

from ..conftest import shared_dataset, write_wav


def fsdd_file(step: int = 301) -> Path:
    root = shared_dataset("fsdd")
    with open(root / "manifest.csv", newline="") as f:
        return root / list(csv.DictReader(f))[step]["path"]


def esc10_file() -> Path:
    root = shared_dataset("esc10")
    with open(root / "manifest.csv", newline="") as f:
        return root / next(iter(csv.DictReader(f)))["path"]


@pytest.fixture(scope="module")
def uploads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("uploads")


@pytest.fixture(scope="module")
def client(fsdd_run: Path, uploads: Path) -> TestClient:
    """The app with small limits (1 MB, 3 s), its temporary folders under ``uploads``."""
    return TestClient(create_app(fsdd_run, ServeSettings(max_upload_bytes=1_000_000, max_duration_s=3.0,
                                                         tmp_dir=str(uploads))))


@pytest.fixture(autouse=True)
def _nothing_left_behind(uploads: Path):
    yield
    assert list(uploads.iterdir()) == []  # every request's temporary folder is gone, good or bad


def test_health_and_model(client: TestClient, fsdd_run: Path):
    assert client.get("/healthz").json()["status"] == "ok"
    m = client.get("/v1/model").json()
    assert m["labels"] == [str(d) for d in range(10)] and m["sample_rate"] == 8000
    assert m["segment"]["length_s"] == 0.5 and m["segment"]["hop_s"] == 0.25 and m["aggregate"] == "mean"
    assert m["limits"] == {"max_upload_bytes": 1_000_000, "max_duration_s": 3.0} and m["members"] == 1


def test_multipart_upload_predicts_like_the_predictor(client: TestClient, fsdd_run: Path):
    path = fsdd_file()
    r = client.post("/v1/predict", files={"file": (path.name, path.read_bytes(), "audio/wav")})
    assert r.status_code == 200, r.text
    res = r.json()
    ref = Predictor(fsdd_run).predict_file(path, segments=True)
    assert res["filename"] == path.name and res["label"] == ref["label"]
    assert res["n_segments"] == ref["n_segments"] == len(res["segments"])
    for lbl, p in ref["probabilities"].items():
        assert res["probabilities"][lbl] == pytest.approx(p, abs=1e-6)
    assert sum(res["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert res["top"][0]["label"] == res["label"] and res["confidence"] == max(res["probabilities"].values())
    assert "spectrogram" not in res and res["timing_ms"]["total"] > 0


def test_raw_body_upload_resamples_and_returns_the_spectrogram(client: TestClient):
    import soundfile as sf

    path = esc10_file()  # 5 s of 22.05 kHz flac; the run works at 8 kHz: send its first 2.5 s
    sr = sf.info(str(path)).samplerate
    wave, _ = sf.read(str(path), dtype="float32", frames=int(2.5 * sr))
    buf = io.BytesIO()
    sf.write(buf, wave, sr, format="FLAC")
    r = client.post("/v1/predict?spectrogram=true", content=buf.getvalue(),
                    headers={"content-type": "application/octet-stream", "x-filename": "dog bark.flac"})
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["filename"] == "dog bark.flac" and res["duration_s"] == pytest.approx(2.5, abs=0.01)
    assert res["n_segments"] == 9  # 0.5 s segments every 0.25 s over 2.5 s
    spec = res["spectrogram"]
    assert spec["n_mels"] == 64 and spec["n_frames"] == num_frames(20000, 200, 80)  # 25 ms / 10 ms at 8 kHz
    cells = np.frombuffer(base64.b64decode(spec["data"]), dtype=np.uint8)
    assert cells.size == spec["n_frames"] * spec["n_mels"] and cells.max() == 255 and cells.std() > 10
    assert spec["db_max"] - spec["db_min"] == pytest.approx(80.0)


def test_long_input_spectrogram_is_reduced_to_at_most_800_columns(fsdd_run: Path, uploads: Path):
    app = create_app(fsdd_run, ServeSettings(tmp_dir=str(uploads)))
    wave = np.random.default_rng(0).standard_normal(8000 * 20).astype(np.float32) * 0.1
    buf = io.BytesIO()
    import soundfile as sf

    sf.write(buf, wave, 8000, format="WAV")
    res = TestClient(app).post("/v1/predict?spectrogram=true&segments=false", content=buf.getvalue()).json()
    spec = res["spectrogram"]
    assert spec["n_frames"] == 667 and "segments" not in res  # 2000 frames, averaged 3 by 3 (<= 800 columns)
    assert spec["seconds_per_frame"] * spec["n_frames"] == pytest.approx(20.0, abs=0.05)


@pytest.mark.parametrize("name,body,status,code", [
    ("empty.wav", b"", 400, "empty"),
    ("noise.wav", bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)), 422, "not_audio"),
    ("readme.mp3", b"# earmark\nnot audio at all\n" * 50, 422, "not_audio"),
    ("header-only.wav", None, 422, "no_audio"),
    ("silent.wav", None, 422, "silent"),
])
def test_bad_uploads_get_clear_json_errors(client: TestClient, tmp_path: Path, name: str, body, status: int,
                                           code: str):
    if name == "header-only.wav":
        body = write_wav(tmp_path / name, np.zeros(0, np.float32), 8000).read_bytes()
    elif name == "silent.wav":
        body = write_wav(tmp_path / name, np.zeros(8000, np.float32), 8000).read_bytes()
    r = client.post("/v1/predict", files={"file": (name, body, "application/octet-stream")})
    assert r.status_code == status, r.text
    err = r.json()
    assert err["error"] == code and err["detail"].startswith(name) and str(tmp_path) not in err["detail"]
    assert "earmark-serve-" not in err["detail"]  # the server's temporary paths are never shown


def test_too_long_audio_is_refused(client: TestClient):
    r = client.post("/v1/predict", files={"file": ("clip.flac", esc10_file().read_bytes(), "audio/flac")})
    assert r.status_code == 413 and r.json()["error"] == "too_long" and "3 s" in r.json()["detail"]


def test_declared_oversize_is_refused_before_reading(client: TestClient):
    r = client.post("/v1/predict", content=b"\0" * 1_100_000)
    assert r.status_code == 413 and r.json()["error"] == "too_large" and "1 MB" in r.json()["detail"]


def _asgi_post(app, chunks: int, chunk_size: int, content_type: bytes, disconnect_after: int | None = None
               ) -> tuple[int, dict, int]:
    """POST a streamed body (no Content-Length) straight to the ASGI app; returns status, JSON and the
    number of chunks the app asked for."""
    asked = 0
    messages: list[dict] = []

    async def receive() -> dict:
        nonlocal asked
        asked += 1
        if disconnect_after is not None and asked > disconnect_after:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": b"\1" * chunk_size, "more_body": asked < chunks}

    async def send(message: dict) -> None:
        messages.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/predict", "raw_path": b"/v1/predict", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", content_type)], "client": ("127.0.0.1", 9), "server": ("127.0.0.1", 80)}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return start["status"], json.loads(body), asked


def test_streamed_oversize_is_refused_while_streaming(client: TestClient):
    status, err, asked = _asgi_post(client.app, chunks=200, chunk_size=64 * 1024, content_type=b"audio/wav")
    assert status == 413 and err["error"] == "too_large"
    assert asked == 16  # 16 x 64 KiB > 1 MB: refused there, the other 184 chunks (12 MB) never read


def test_streamed_multipart_oversize_is_refused_while_streaming(client: TestClient):
    boundary = b"XyZ"
    head = (b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.wav\"\r\n"
            b"Content-Type: audio/wav\r\n\r\n")
    asked = 0
    messages: list[dict] = []

    async def receive() -> dict:
        nonlocal asked
        asked += 1
        return {"type": "http.request", "body": head if asked == 1 else b"\1" * 65536, "more_body": asked < 300}

    async def send(message: dict) -> None:
        messages.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/predict", "raw_path": b"/v1/predict", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"multipart/form-data; boundary=" + boundary)],
             "client": ("127.0.0.1", 9), "server": ("127.0.0.1", 80)}
    asyncio.run(client.app(scope, receive, send))
    assert next(m for m in messages if m["type"] == "http.response.start")["status"] == 413
    assert asked <= 18


def test_a_client_that_goes_away_leaves_nothing_behind(client: TestClient):
    status, err, _ = _asgi_post(client.app, chunks=50, chunk_size=1024, content_type=b"audio/wav", disconnect_after=3)
    assert status == 400 and err["error"] == "disconnected"


def test_form_without_a_file_and_hostile_names(client: TestClient):
    r = client.post("/v1/predict", data={"note": "no file here"}, files={"other": ("", b"")})
    assert r.status_code == 400 and r.json()["error"] in ("no_file", "empty")
    path = fsdd_file(7)
    r = client.post("/v1/predict", files={"file": ("../../etc/passwd.wav", path.read_bytes(), "audio/wav")})
    assert r.status_code == 200 and r.json()["filename"] == "passwd.wav"


def test_upload_helpers():
    assert sniff_extension(b"RIFF\0\0\0\0WAVE", "x.mp3") == ".wav"
    assert sniff_extension(b"fLaC", "") == ".flac" and sniff_extension(b"\0\0\0\x20ftypM4A ", "a") == ".m4a"
    assert sniff_extension(b"hello", "song.OGG") == ".ogg" and sniff_extension(b"hello", "a.exe") == ".bin"
    assert clean_filename("C:\\Users\\me\\a.wav") == "a.wav" and clean_filename(None) == "upload"
    assert clean_filename("../x/a\r\nb.wav") == "ab.wav"


def test_the_page_and_its_assets_are_served_without_a_cdn(client: TestClient):
    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "default-src 'self'" in r.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    text = r.text + client.get("/static/app.js").text + client.get("/static/style.css").text
    assert "http://" not in text and "https://" not in text and "//cdn" not in text
