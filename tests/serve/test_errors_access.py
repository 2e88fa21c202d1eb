"""Every error answer has one shape; every byte of a body counts; the bearer token and CORS."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from earmark.serve.app import ServeSettings, create_app, exposure_warning

from ..conftest import tone, write_wav


@pytest.fixture(scope="module")
def client(fsdd_run: Path) -> TestClient:
    return TestClient(create_app(fsdd_run, ServeSettings(max_upload_bytes=1_000_000, max_duration_s=3.0)),
                      raise_server_exceptions=False)


def _shape(r) -> dict:
    body = r.json()
    assert set(body) == {"error", "detail"}, body
    assert isinstance(body["error"], str) and isinstance(body["detail"], str) and body["detail"]
    return body


def test_every_error_has_the_documented_shape(client: TestClient, monkeypatch: pytest.MonkeyPatch):
    r = client.get("/no/such/page")
    assert r.status_code == 404 and _shape(r)["error"] == "not_found"
    r = client.get("/v1/predict")
    assert r.status_code == 405 and _shape(r)["error"] == "method_not_allowed" and "GET" in r.json()["detail"]
    r = client.post("/v1/predict?spectrogram=maybe", content=b"x")
    assert r.status_code == 422 and _shape(r)["error"] == "invalid_request" and "spectrogram" in r.json()["detail"]
    r = client.post("/v1/predict", content=b"\0" * 1_100_000)
    assert r.status_code == 413 and _shape(r)["error"] == "too_large"

    def broken(*_a, **_k):
        raise RuntimeError("a bug")

    monkeypatch.setattr(client.app.state.service, "analyse", broken)
    r = client.post("/v1/predict", content=write_wav(Path("/tmp") / "earmark-t.wav", tone(440, 1, 8000), 8000)
                    .read_bytes())
    assert r.status_code == 500 and _shape(r)["error"] == "internal_error" and "a bug" not in r.text


def test_a_truncated_upload_is_refused_as_truncated(client: TestClient, tmp_path: Path):
    whole = write_wav(tmp_path / "cut.wav", tone(440, 2.0, 8000), 8000).read_bytes()
    r = client.post("/v1/predict", files={"file": ("cut.wav", whole[: len(whole) // 2], "audio/wav")})
    assert r.status_code == 422 and _shape(r)["error"] == "truncated"
    assert r.json()["detail"].startswith("cut.wav: truncated") and r.json()["detail"].count("cut.wav") == 1


def _stream(app, parts: list[bytes], repeat_last: int, content_type: bytes, headers: list | None = None
            ) -> tuple[int, dict, int]:
    """POST a chunked body (no Content-Length) built lazily: ``parts``, then the last part ``repeat_last``
    more times. Returns the status, JSON answer and how many chunks the app asked for."""
    asked = 0
    total = len(parts) + repeat_last
    messages: list[dict] = []

    async def receive() -> dict:
        nonlocal asked
        asked += 1
        body = parts[min(asked, len(parts)) - 1]
        return {"type": "http.request", "body": body, "more_body": asked < total}

    async def send(message: dict) -> None:
        messages.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/predict", "raw_path": b"/v1/predict", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", content_type), *(headers or [])], "client": ("127.0.0.1", 9),
             "server": ("127.0.0.1", 80)}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in messages if m["type"] == "http.response.start")
    return start["status"], json.loads(b"".join(m.get("body", b"") for m in messages
                                                if m["type"] == "http.response.body")), asked


CHUNK = 64 * 1024


@pytest.mark.parametrize("first", ["text_field", "file_then_text", "two_files"])
def test_every_byte_of_a_multipart_body_counts(client: TestClient, tmp_path: Path, first: str):
    # A 300 MB part after a small valid file (or a text field before it): refused with 413 after about
    # 1 MB + the margin has come in; the remaining ~299 MB are never asked for (and never allocated here).
    wav = write_wav(tmp_path / "a.wav", tone(440, 1.0, 8000), 8000).read_bytes()
    file_part = (b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
                 b"Content-Type: audio/wav\r\n\r\n" + wav + b"\r\n")
    text_head = b"--B\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\n"
    file2_head = b"--B\r\nContent-Disposition: form-data; name=\"more\"; filename=\"b.wav\"\r\n\r\n"
    parts = {"text_field": [text_head, b"x" * CHUNK], "file_then_text": [file_part, text_head, b"x" * CHUNK],
             "two_files": [file_part, file2_head, b"\1" * CHUNK]}[first]
    repeat = 300_000_000 // CHUNK
    status, err, asked = _stream(client.app, parts, repeat, b"multipart/form-data; boundary=B")
    assert status == 413 and err["error"] == "too_large"
    assert asked <= len(parts) + (1_000_000 + 64 * 1024) // CHUNK + 1  # stopped reading at the limit
    assert asked < repeat // 100


def test_token_guards_the_api_but_not_health_or_page(fsdd_run: Path):
    app = create_app(fsdd_run, ServeSettings(token="s3cret"))
    c = TestClient(app)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
        r = c.get("/v1/model", headers=headers)
        assert r.status_code == 401 and _shape(r)["error"] == "unauthorized"
        assert r.headers["www-authenticate"] == "Bearer"
    assert c.get("/v1/model", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert c.post("/v1/predict", content=b"x").status_code == 401
    assert c.get("/healthz").status_code == 200 and c.get("/").status_code == 200
    assert "earmark-token" in c.get("/static/app.js").text  # the page asks for the token and sends it
    # a refused upload is not read: 401 before the body is asked for
    status, _, asked = _stream(app, [b"\1" * CHUNK], 100, b"audio/wav")
    assert status == 401 and asked == 0


def test_token_compare_is_constant_time():
    import inspect

    from earmark.serve import app as serve_app

    assert "hmac.compare_digest" in inspect.getsource(serve_app.BearerToken)


def test_cors_is_closed_by_default_and_opened_per_origin(fsdd_run: Path, client: TestClient):
    origin = {"Origin": "https://example.org"}
    assert "access-control-allow-origin" not in client.get("/v1/model", headers=origin).headers
    pre = {**origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    assert "access-control-allow-origin" not in client.options("/v1/predict", headers=pre).headers
    opened = TestClient(create_app(fsdd_run, ServeSettings(token="t", cors_origins=("https://example.org",))))
    r = opened.options("/v1/predict", headers=pre)  # the preflight needs no token
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://example.org"
    r = opened.get("/v1/model", headers={**origin, "Authorization": "Bearer t"})
    assert r.headers["access-control-allow-origin"] == "https://example.org"
    other = opened.get("/v1/model", headers={"Origin": "https://evil.example", "Authorization": "Bearer t"})
    assert "access-control-allow-origin" not in other.headers


def test_binding_beyond_loopback_without_a_token_warns():
    assert exposure_warning("127.0.0.1", None) is None and exposure_warning("localhost", None) is None
    assert exposure_warning("::1", None) is None and exposure_warning("0.0.0.0", "t") is None
    assert "without a token" in exposure_warning("0.0.0.0", None)
    assert "without a token" in exposure_warning("192.168.1.5", "")


def test_serve_cli_warns_without_a_token(monkeypatch: pytest.MonkeyPatch, fsdd_run: Path):
    import uvicorn
    from typer.testing import CliRunner

    from earmark.cli import app

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda web, **kw: seen.update(kw, web=web))
    monkeypatch.delenv("EARMARK_TOKEN", raising=False)
    r = CliRunner().invoke(app, ["serve", str(fsdd_run), "--host", "0.0.0.0", "--cors-origin", "https://a.example"])
    assert r.exit_code == 0, r.output and "without a token" in r.output
    assert "without a token" in r.output and seen["host"] == "0.0.0.0"
    monkeypatch.setenv("EARMARK_TOKEN", "abc")
    r = CliRunner().invoke(app, ["serve", str(fsdd_run), "--host", "0.0.0.0"])
    assert "without a token" not in r.output
    assert TestClient(seen["web"]).get("/v1/model").status_code == 401
