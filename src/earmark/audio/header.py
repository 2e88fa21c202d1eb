"""The length a file's header states, read without decoding: what truncation is measured against.

libsndfile reports only the frames actually present in a cut WAV, AIFF or AU file, so a file cut in half
decodes as a shorter, valid-looking one. The header still says how long it was written: the RIFF/RF64
``data`` chunk (and ``fact`` for compressed WAV), AIFF's ``COMM`` frames, AU's data size and FLAC's
STREAMINFO total samples. Ogg and Opus state no total length (a file cut at a page boundary cannot be told
from a shorter one); MP3's Xing/Info frame count is read by libsndfile (see :mod:`earmark.audio.io`).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_UNKNOWN_SIZES = {0, 0xFFFFFFFF}  # streaming writers leave these when they cannot seek back
_MAX_CHUNKS = 4096


@dataclass(frozen=True)
class StatedLength:
    """Frames the header promises; ``exact`` when the decoder must deliver exactly that many (PCM, FLAC)."""

    frames: int
    exact: bool


def stated_length(path: str | Path) -> StatedLength | None:
    """The length ``path``'s header states, or None when it states none (or the header is not understood)."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
                return _wav(f, rf64=head[:4] == b"RF64")
            if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
                return _aiff(f)
            if head[:4] == b".snd":
                return _au(head, f)
            f.seek(0)
            return _flac(f)
    except (OSError, struct.error, ValueError):
        return None


def _chunks(f: BinaryIO, fmt: str) -> dict[bytes, tuple[int, int]]:
    """``{id: (offset of its body, declared size)}`` of the chunks after a 12-byte RIFF/FORM header."""
    found: dict[bytes, tuple[int, int]] = {}
    pos = 12
    for _ in range(_MAX_CHUNKS):
        f.seek(pos)
        hdr = f.read(8)
        if len(hdr) < 8:
            break
        cid, size = hdr[:4], struct.unpack(fmt, hdr[4:])[0]
        found.setdefault(cid, (pos + 8, size))
        if cid in (b"data", b"SSND"):
            break  # the sample data: what follows it does not change the length
        pos += 8 + size + (size & 1)
    return found


_WAV_PCM_TAGS = {1, 3, 6, 7}  # PCM, IEEE float, A-law, mu-law: bytes map to frames by the block size


def _wav(f: BinaryIO, rf64: bool) -> StatedLength | None:
    chunks = _chunks(f, "<I")
    if b"fmt " not in chunks or b"data" not in chunks:
        return None
    f.seek(chunks[b"fmt "][0])
    fmt = f.read(40)
    tag, _, _, _, block_align = struct.unpack("<HHIIH", fmt[:14])
    if tag == 0xFFFE and len(fmt) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the real tag opens the sub-format GUID
        tag = struct.unpack("<H", fmt[24:26])[0]
    data_size = chunks[b"data"][1]
    if rf64 and b"ds64" in chunks:
        f.seek(chunks[b"ds64"][0])
        _, data_size, _ = struct.unpack("<QQQ", f.read(24))
    elif data_size in _UNKNOWN_SIZES:
        return None
    if tag in _WAV_PCM_TAGS and block_align > 0:
        return StatedLength(data_size // block_align, exact=True)
    if b"fact" in chunks:  # compressed (ADPCM, GSM, ...): the fact chunk holds the frame count
        f.seek(chunks[b"fact"][0])
        frames = struct.unpack("<I", f.read(4))[0]
        return StatedLength(frames, exact=False) if frames else None
    return None


def _aiff(f: BinaryIO) -> StatedLength | None:
    chunks = _chunks(f, ">I")
    if b"COMM" not in chunks:
        return None
    f.seek(chunks[b"COMM"][0])
    _, frames = struct.unpack(">hI", f.read(6))
    return StatedLength(frames, exact=True) if frames else None


#: AU encodings whose data bytes map to frames: bytes per sample.
_AU_BYTES = {1: 1, 2: 1, 3: 2, 4: 3, 5: 4, 6: 4, 7: 8, 27: 1}


def _au(head: bytes, f: BinaryIO) -> StatedLength | None:
    f.seek(12)
    rest = f.read(12)
    data_size = struct.unpack(">I", head[8:12])[0]
    encoding, _, channels = struct.unpack(">III", rest)
    if data_size in _UNKNOWN_SIZES or encoding not in _AU_BYTES or channels == 0:
        return None
    return StatedLength(data_size // (_AU_BYTES[encoding] * channels), exact=True)


def _flac(f: BinaryIO) -> StatedLength | None:
    head = f.read(10)
    if head[:3] == b"ID3" and len(head) == 10:  # an ID3v2 tag before the stream (sizes are 7-bit bytes)
        size = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]
        f.seek(10 + size)
        head = f.read(4)
    if head[:4] != b"fLaC":
        return None
    f.seek(f.tell() - len(head) + 4)
    block = f.read(4 + 18)
    if len(block) < 22 or block[0] & 0x7F != 0:  # STREAMINFO is always the first metadata block
        return None
    packed = int.from_bytes(block[4 + 10: 4 + 18], "big")
    total = packed & ((1 << 36) - 1)
    return StatedLength(total, exact=True) if total else None
