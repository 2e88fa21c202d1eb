"""``POST /v1/tag``: the pretrained AudioSet tagger over HTTP, when the server is started with one.

    earmark serve runs/esc10 --tagger mn04_as
    curl -F file=@street.mp3 'http://127.0.0.1:8000/v1/tag?top=5'

The answer has the shape of one file of ``earmark tag``: ``{"path": <the client's file name>, "tags":
[{"label", "score"}, ...], "duration_s", "n_windows"}`` (sigmoid scores, highest first; ``?segments=true``
adds each 10 s window's tags). Uploads are received, limited and cleaned up exactly as for
``/v1/predict``; bad audio gets the same ``{"error", "detail"}`` bodies.
"""
from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool

from ..audio.io import audio_info, stream_audio
from ..errors import AudioDecodeError
from .upload import Upload, UploadError, receive_upload

if TYPE_CHECKING:  # pragma: no cover
    from ..inference.tagger import Tagger
    from .app import ServeSettings


class TagService:
    """The tagger, loaded once, and the work of one ``/v1/tag`` request."""

    def __init__(self, tagger: Tagger, settings: ServeSettings) -> None:
        self.tagger, self.settings = tagger, settings
        self._slots = threading.BoundedSemaphore(max(1, settings.max_concurrent))

    def _blocks(self, upload: Upload) -> list[np.ndarray]:
        from .app import _too_long

        limit = self.settings.max_duration_s
        info = audio_info(upload.path)
        if info.duration_s is not None and info.duration_s > limit + 0.5:
            raise _too_long(upload.filename, info.duration_s, limit)
        sr = self.tagger.sample_rate
        max_samples, total, blocks = int(limit * sr) + sr // 2, 0, []
        for block in stream_audio(upload.path, sr, block_s=10.0):
            total += block.shape[0]
            if total > max_samples:
                raise _too_long(upload.filename, None, limit)
            blocks.append(block)
        return blocks

    def tag(self, upload: Upload, top: int, segments: bool) -> dict[str, Any]:
        from .app import _decode_error

        with self._slots:
            try:
                return self.tagger.tag_blocks(self._blocks(upload), top, segments, upload.filename)
            except AudioDecodeError as exc:
                reason = exc.reason.replace(str(upload.path), upload.filename).replace(str(upload.path.parent), ".")
                raise _decode_error(upload.filename, reason) from None


def add_tag_route(app: FastAPI, settings: ServeSettings) -> TagService:
    """Load ``settings.tagger`` and add ``POST /v1/tag`` to ``app``."""
    from ..inference.tagger import Tagger

    service = TagService(Tagger(str(settings.tagger)), settings)
    app.state.tagger = service

    @app.post("/v1/tag")
    async def tag(request: Request, top: int = 10, segments: bool = False,
                  filename: str | None = None) -> dict[str, Any]:
        """AudioSet tags of one audio file sent as multipart (field ``file``) or as the raw body."""
        if not 1 <= top <= len(service.tagger.labels):
            raise UploadError(422, "bad_parameter", f"top must be between 1 and {len(service.tagger.labels)}")
        with tempfile.TemporaryDirectory(prefix="earmark-serve-", dir=settings.tmp_dir) as tmp:
            upload = await receive_upload(request.headers.get("content-type"), request.headers.get("content-length"),
                                          request.stream(), Path(tmp), settings.max_upload_bytes,
                                          filename or request.headers.get("x-filename"))
            return await run_in_threadpool(service.tag, upload, top, segments)

    return service
