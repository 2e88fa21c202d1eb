"""The HTTP app: a run folder loaded once, predictions over HTTP, and a page to try it.

    earmark serve runs/esc10 --port 8000
    curl -F file=@dog.wav http://127.0.0.1:8000/v1/predict
    curl --data-binary @dog.wav 'http://127.0.0.1:8000/v1/predict?filename=dog.wav'

Endpoints: ``POST /v1/predict`` (multipart or raw body; ``?spectrogram=true`` adds the log-mel
spectrogram the page draws), ``GET /v1/model`` (labels and settings), ``GET /healthz``, the page at ``/``
and the API description at ``/openapi.json``. Every upload lives in its own temporary folder, removed when
the request ends, whatever happens. Every error answer, whatever its cause (a bad upload, an unknown path,
a wrong method, an invalid query parameter, a missing token, a server fault), is the JSON
``{"error": code, "detail": sentence}``.

Access: with a token (``ServeSettings.token``: ``earmark serve --token`` or ``EARMARK_TOKEN``) every
``/v1/*`` request needs ``Authorization: Bearer TOKEN`` (401 otherwise); ``/healthz`` and the page stay
open, and the page asks for the token. Cross-origin requests from browsers are refused unless their origin
is listed (``cors_origins``).
"""
from __future__ import annotations

import hmac
import ipaddress
import logging
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from ..audio.io import audio_info, stream_audio
from ..errors import AudioDecodeError
from ..inference.predictor import Predictor
from .spectrogram import DisplaySpectrogram
from .upload import Upload, UploadError, receive_upload

log = logging.getLogger(__name__)

STATIC_DIR = Path(str(resources.files("earmark.serve") / "static"))
#: A policy for the page: everything from this server, nothing from anywhere else.
PAGE_CSP = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self'; "
            "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


@dataclass
class ServeSettings:
    """Limits and resources of the server."""

    max_upload_bytes: int = 50_000_000  # refused while streaming, before the rest is read
    max_duration_s: float = 600.0  # decoded audio longer than this is refused
    tmp_dir: str | None = None  # parent of the per-request temporary folders (default: the system's)
    max_concurrent: int = 2  # requests decoding and predicting at once (more wait their turn)
    backend: str = "torch"  # torch or onnx
    spectrogram_columns: int = 800
    tagger: str | None = None  # a pretrained AudioSet checkpoint (name or path): adds POST /v1/tag (serve/tag.py)
    token: str | None = None  # bearer token required on /v1/* (None: open)
    cors_origins: tuple[str, ...] = ()  # origins allowed to call the API from a browser (none by default)


class ModelService:
    """The model, loaded once, and the work of one request (decode, predict, spectrogram)."""

    def __init__(self, run_dir: str | Path, settings: ServeSettings) -> None:
        self.settings = settings
        self.predictor = Predictor(run_dir, backend=settings.backend)  # type: ignore[arg-type]
        self.recipe = self.predictor.recipe
        self.spectrogram = DisplaySpectrogram(self.recipe, settings.spectrogram_columns)
        self._slots = threading.BoundedSemaphore(max(1, settings.max_concurrent))
        self.started = time.time()
        self.served = 0

    def describe(self) -> dict[str, Any]:
        p, r = self.predictor, self.recipe
        return {
            "run": p.run.path.name, "labels": p.labels, "backend": p.backend, "sample_rate": p.sample_rate,
            "segment": r.segment.model_dump(), "features": r.features.model_dump(), "model": r.model.name,
            "members": len(p.weights), "voting": p.voting, "aggregate": r.eval.aggregate,
            "tta": r.ensemble.tta,
            "limits": {"max_upload_bytes": self.settings.max_upload_bytes,
                       "max_duration_s": self.settings.max_duration_s},
        }

    def _decode(self, upload: Upload) -> np.ndarray:
        """The whole upload as float32 mono ``(samples,)``; refuses audio longer than the limit early."""
        limit = self.settings.max_duration_s
        info = audio_info(upload.path)
        if info.duration_s is not None and info.duration_s > limit + 0.5:
            raise _too_long(upload.filename, info.duration_s, limit)
        sr = self.predictor.sample_rate
        max_samples = int(limit * sr) + sr // 2
        blocks, total = [], 0
        for block in stream_audio(upload.path, sr, block_s=10.0, channels=self.recipe.audio.channels):
            total += block.shape[0]
            if total > max_samples:
                raise _too_long(upload.filename, None, limit)
            blocks.append(block)
        return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)

    def analyse(self, upload: Upload, spectrogram: bool = False, segments: bool = True) -> dict[str, Any]:
        """Predict one uploaded file; with ``spectrogram``, add the log-mel spectrogram for display."""
        with self._slots:
            t0 = time.perf_counter()
            try:
                wave = self._decode(upload)
                t1 = time.perf_counter()
                if self.recipe.audio.separation != "none":
                    result = self.predictor.predict_file(upload.path, segments=True)
                else:
                    result = self.predictor.predict_blocks([wave], segments=True, name=upload.filename)
            except AudioDecodeError as exc:
                # Name the client's file, never the server's temporary path.
                reason = exc.reason.replace(str(upload.path), upload.filename).replace(str(upload.path.parent), ".")
                raise _decode_error(upload.filename, reason) from None
            t2 = time.perf_counter()
            result.pop("path", None)
            probs = result["probabilities"]
            out: dict[str, Any] = {"filename": upload.filename, "size_bytes": upload.size, **result,
                                   "confidence": probs[result["label"]],
                                   "top": [{"label": k, "probability": v}
                                           for k, v in sorted(probs.items(), key=lambda kv: -kv[1])]}
            if not segments:
                out.pop("segments", None)
            if spectrogram:
                out["spectrogram"] = self.spectrogram(wave)
            t3 = time.perf_counter()
            out["timing_ms"] = {"decode": round(1e3 * (t1 - t0), 1), "predict": round(1e3 * (t2 - t1), 1),
                                "spectrogram": round(1e3 * (t3 - t2), 1), "total": round(1e3 * (t3 - t0), 1)}
            self.served += 1
            return out


def _too_long(filename: str, duration: float | None, limit: float) -> UploadError:
    what = f"{duration:.1f} s of audio" if duration is not None else "the audio"
    return UploadError(413, "too_long", f"{filename}: {what} is longer than the limit of {limit:g} s; send a "
                                        "shorter excerpt")


def _decode_error(filename: str, reason: str) -> UploadError:
    code = ("silent" if reason.startswith("silent") else "too_short" if reason.startswith(("too short", "shorter"))
            else "no_audio" if reason.startswith("no audio") else "truncated" if reason.startswith("truncated")
            else "missing_channel" if reason.startswith("missing channel") else "not_audio")
    hint = {"not_audio": "send an audio file (wav, flac, ogg, mp3, m4a, ...)",
            "truncated": "send the complete file",
            "missing_channel": "send a file with that channel (this model listens to one channel of it)",
            "silent": "send a recording with sound in it", "too_short": "send a longer recording",
            "no_audio": "the file holds no samples; send a complete audio file"}[code]
    return UploadError(422, code, f"{filename}: {reason}; {hint}")


def error_body(code: str, detail: str) -> dict[str, str]:
    """The one shape of every error answer."""
    return {"error": code, "detail": detail}


_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 413: "too_large", 415: "unsupported_media_type", 422: "invalid_request",
               429: "too_many_requests"}


def _error_handlers(app: FastAPI) -> None:
    """Answer every error, FastAPI's and Starlette's own included, with :func:`error_body`."""

    @app.exception_handler(UploadError)
    async def _upload_error(_: Request, exc: UploadError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.detail), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            detail = f"no such path: {request.url.path}; the API is POST /v1/predict and GET /v1/model"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        return JSONResponse(error_body(_HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}"), detail),
                            status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(x) for x in e.get('loc', ()) if x != 'query')}: {e.get('msg', '')}"
                             for e in exc.errors())
        return JSONResponse(error_body("invalid_request", f"invalid request ({problems})"), status_code=422)

    @app.exception_handler(Exception)
    async def _fault(_: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error", exc_info=exc)
        return JSONResponse(error_body("internal_error", "the server failed on this request (see its log); "
                                                         "try again or report it"), status_code=500)


class BearerToken:
    """ASGI middleware: ``/v1/*`` needs ``Authorization: Bearer <token>`` (compared in constant time)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.token = app, token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/") and not self._allowed(scope):
            detail = "this server needs a token: send the header 'Authorization: Bearer <token>'"
            response = JSONResponse(error_body("unauthorized", detail), status_code=401,
                                    headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, given = header.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token)


def exposure_warning(host: str, token: str | None) -> str | None:
    """A warning for binding to an address other machines can reach without a token, else None."""
    if token:
        return None
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback:
        return None
    return (f"serving on {host} without a token: anyone who can reach this address can use the model; "
            "pass --token (or set EARMARK_TOKEN), or bind to 127.0.0.1")


_PREDICT_DOC = {
    "requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "file": {"type": "string", "format": "binary"}}}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    }},
}


def create_app(run_dir: str | Path, settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI app for a finished run (the model is loaded here, once)."""
    settings = settings or ServeSettings()
    service = ModelService(run_dir, settings)
    app = FastAPI(title="earmark", version="1", summary=f"Audio classifier: {service.predictor.run.path.name}",
                  docs_url=None, redoc_url=None)  # FastAPI's doc pages load from a CDN; /openapi.json stays
    app.state.service = service

    _error_handlers(app)
    if settings.token:
        app.add_middleware(BearerToken, token=settings.token)
    if settings.cors_origins:  # added last: outermost, so a browser's preflight is answered before the token check
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "X-Filename"])

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "uptime_s": round(time.time() - service.started, 1), "served": service.served}

    @app.get("/v1/model")
    def model() -> dict[str, Any]:
        return service.describe()

    @app.post("/v1/predict", openapi_extra=_PREDICT_DOC)
    async def predict(request: Request, spectrogram: bool = False, segments: bool = True,
                      filename: str | None = None) -> dict[str, Any]:
        """Classify one audio file sent as multipart (field ``file``) or as the raw body."""
        with tempfile.TemporaryDirectory(prefix="earmark-serve-", dir=settings.tmp_dir) as tmp:
            upload = await receive_upload(request.headers.get("content-type"), request.headers.get("content-length"),
                                          request.stream(), Path(tmp), settings.max_upload_bytes,
                                          filename or request.headers.get("x-filename"))
            return await run_in_threadpool(service.analyse, upload, spectrogram, segments)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Content-Security-Policy": PAGE_CSP,
                                                                 "Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    if settings.tagger:  # POST /v1/tag with a pretrained AudioSet tagger (serve/tag.py)
        from .tag import add_tag_route

        add_tag_route(app, settings)
    log.info("serving %s (%d classes, backend %s); limits %s", service.predictor.run.path,
             len(service.predictor.labels), settings.backend, asdict(settings))
    return app
