"""Receiving an upload: streamed to a file in a private temporary folder, refused as soon as it is too big.

Two ways to send a file to ``POST /v1/predict``:

- ``multipart/form-data`` with a file field (a browser form, ``curl -F file=@song.mp3``);
- the raw bytes as the body (``curl --data-binary @song.mp3 -H 'Content-Type: audio/mpeg'``), the name
  in ``?filename=`` or an ``X-Filename`` header.

Every byte of the body counts toward the limit: the file, other form fields, files after the first and
multipart's own headers and boundaries (allowed a small margin, :data:`MULTIPART_MARGIN`), whether the body
comes with a ``Content-Length`` or chunked.

The bytes are written only under the folder given (the caller's temporary folder), under a fixed name
chosen here: the client's file name is only ever shown, never used as a path.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import BinaryIO

from ..audio.io import AUDIO_EXTENSIONS


class UploadError(Exception):
    """An upload the API refuses: an HTTP status, a short machine-readable code and a sentence for people."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


@dataclass(frozen=True)
class Upload:
    path: Path  # where the bytes are, inside the temporary folder
    filename: str  # the client's name for it (display only)
    size: int  # bytes


#: Leading bytes of the containers we recognise, so the decoder is chosen by content, not by name.
_MAGIC: list[tuple[int, bytes, str]] = [
    (0, b"RIFF", ".wav"), (0, b"RF64", ".wav"), (0, b"fLaC", ".flac"), (0, b"OggS", ".ogg"), (0, b"ID3", ".mp3"),
    (0, b"FORM", ".aiff"), (0, b".snd", ".au"), (4, b"ftyp", ".m4a"), (0, b"\x1a\x45\xdf\xa3", ".webm"),
    (0, b"#!AMR", ".amr"), (0, b"\x30\x26\xb2\x75", ".wma"),
]


def sniff_extension(head: bytes, filename: str) -> str:
    """The extension to store an upload under: from its first bytes, else its name's, else ``.bin``."""
    for offset, magic, ext in _MAGIC:
        if head[offset: offset + len(magic)] == magic:
            return ext
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06:
        return ".mp3"  # an MPEG audio frame without an ID3 tag
    suffix = PurePath(filename).suffix.lower()
    return suffix if suffix in AUDIO_EXTENSIONS else ".bin"


def clean_filename(name: str | None) -> str:
    """A client-supplied file name reduced to a short, printable base name (for messages and results)."""
    base = PurePath((name or "").replace("\\", "/")).name
    base = "".join(c for c in base if c.isprintable() and c not in "\r\n\t")[:200]
    return base or "upload"


class _Sink:
    """Writes one upload to ``folder/upload.part`` while counting; refuses more than ``max_bytes``."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder, self.max_bytes = folder, max_bytes
        self.path = folder / "upload.part"
        self.file: BinaryIO = open(self.path, "wb")  # noqa: SIM115 - closed in finish()
        self.size = 0
        self.head = b""

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        if self.size > self.max_bytes:
            raise _too_large(self.max_bytes)
        if len(self.head) < 64:
            self.head += data[: 64 - len(self.head)]
        self.file.write(data)

    def finish(self, filename: str) -> Upload:
        self.file.close()
        if self.size == 0:
            raise UploadError(400, "empty", f"{filename}: the upload is empty (0 bytes); send an audio file")
        final = self.folder / f"upload{sniff_extension(self.head, filename)}"
        self.path.rename(final)
        return Upload(final, filename, self.size)

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()


#: Room for a multipart body's headers and boundaries beyond the limit on the file itself.
MULTIPART_MARGIN = 64 * 1024


def _too_large(max_bytes: int, declared: int | None = None) -> UploadError:
    size = f" ({_mb(declared)})" if declared is not None else ""
    return UploadError(413, "too_large", f"the upload{size} is larger than the limit of {_mb(max_bytes)}; "
                                         "send a shorter or more compressed file")


def _mb(n: int) -> str:
    return f"{n / 1e6:g} MB"


async def receive_upload(content_type: str | None, content_length: str | None, chunks: AsyncIterator[bytes],
                         folder: Path, max_bytes: int, filename: str | None = None) -> Upload:
    """Stream a request body (raw or multipart) into ``folder``; stops reading once it exceeds ``max_bytes``.

    Raises:
        UploadError: 413 too large (by ``Content-Length`` before reading, or while streaming), 400 empty,
            malformed multipart, or no file in the form.
    """
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise UploadError(400, "bad_request", f"invalid Content-Length {content_length!r}") from None
        # A multipart body carries a little more than the file: allow for its headers and boundaries.
        if declared > max_bytes + MULTIPART_MARGIN:
            raise _too_large(max_bytes, declared)
    from starlette.requests import ClientDisconnect

    ctype = (content_type or "").lower()
    sink = _Sink(folder, max_bytes)
    try:
        if ctype.startswith("multipart/form-data"):
            name = await _receive_multipart(content_type or "", _counted(chunks, max_bytes + MULTIPART_MARGIN,
                                                                         max_bytes), sink)
        else:
            async for chunk in chunks:
                sink.write(chunk)
            name = filename
        return sink.finish(clean_filename(name))
    except ClientDisconnect:
        raise UploadError(400, "disconnected", "the client went away before the upload was complete") from None
    finally:
        sink.close()


async def _counted(chunks: AsyncIterator[bytes], limit: int, max_bytes: int) -> AsyncIterator[bytes]:
    """``chunks``, refused with 413 as soon as more than ``limit`` bytes in all have come (no more is read)."""
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise _too_large(max_bytes)
        yield chunk


async def _receive_multipart(content_type: str, chunks: AsyncIterator[bytes], sink: _Sink) -> str | None:
    """Parse a multipart body, writing the first file part (or a part named ``file``) to ``sink``."""
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadError(400, "bad_request", "multipart/form-data without a boundary; send the file as a form "
                                              "field named 'file' or as the raw request body")
    state: dict = {"field": b"", "value": b"", "headers": {}, "taken": False, "active": False, "name": None}
    pending: list[bytes] = []

    def on_part_begin() -> None:
        state["headers"] = {}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        # latin-1 keeps the raw bytes: parse_options_header encodes back to latin-1, and the file name is
        # then decoded as UTF-8 (what browsers and curl send), so non-ASCII names survive.
        state["headers"][state["field"].decode("latin-1").strip().lower()] = state["value"].decode("latin-1")
        state["field"], state["value"] = b"", b""

    def on_headers_finished() -> None:
        _, disp = parse_options_header(state["headers"].get("content-disposition", ""))
        fname = disp.get(b"filename")
        is_file = fname is not None or disp.get(b"name") == b"file"
        state["active"] = is_file and not state["taken"]
        if state["active"]:
            state["taken"] = True
            state["name"] = fname.decode("utf-8", "replace") if fname is not None else None

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["active"]:
            pending.append(data[start:end])

    def on_part_end() -> None:
        state["active"] = False

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
        "on_part_end": on_part_end})
    try:
        async for chunk in chunks:
            parser.write(chunk)
            for piece in pending:
                sink.write(piece)
            pending.clear()
        parser.finalize()
    except MultipartParseError as exc:
        raise UploadError(400, "bad_request", f"malformed multipart body ({exc})") from None
    if not state["taken"]:
        raise UploadError(400, "no_file", "the form has no file; send it in a field named 'file'")
    return state["name"]
