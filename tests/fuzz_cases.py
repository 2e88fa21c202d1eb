"""Hypothesis strategies for hostile audio files, shared by the fuzz tests and ``bench/fuzz.py``.

Each strategy draws ``(extension, bytes)``: random bytes under an audio name; WAV, RF64, AIFF, AU and FLAC
headers with absurd fields (sample rates, channel counts, bit depths, chunk sizes, zero-length chunks)
before garbage or NaN/Inf float samples; and real files (written by libsndfile) with bytes flipped, cut
or spliced.
"""
from __future__ import annotations

import functools
import io
import struct

import numpy as np
import soundfile as sf
from hypothesis import strategies as st

EXTENSIONS = [".wav", ".flac", ".mp3", ".ogg", ".opus", ".aiff", ".au", ".m4a", ".bin"]
RATES = st.one_of(st.sampled_from([0, 1, 7, 8000, 16000, 44100, 48000, 192000, 768000, 0x7FFFFFFF, 0xFFFFFFFF]),
                  st.integers(0, 0xFFFFFFFF))
CHANNELS = st.one_of(st.sampled_from([0, 1, 2, 8, 255, 256, 1024, 0xFFFF]), st.integers(0, 0xFFFF))
SIZES = st.one_of(st.sampled_from([0, 1, 2, 0xFFFFFFFF, 0x7FFFFFFF]), st.integers(0, 0xFFFFFFFF))


@st.composite
def sample_bytes(draw: st.DrawFn, max_size: int = 4096) -> bytes:
    """A body: garbage, or float32 samples that may hold NaN and Inf."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=max_size))
    values = draw(st.lists(st.one_of(st.floats(width=32), st.sampled_from([float("nan"), float("inf"), -float("inf"),
                                                                            0.0, 1e30])), max_size=max_size // 4))
    return np.asarray(values, dtype="<f4").tobytes()


@st.composite
def wav_files(draw: st.DrawFn) -> tuple[str, bytes]:
    tag = draw(st.sampled_from([1, 3, 6, 7, 0x11, 0x31, 0xFFFE, 0, 0xFFFF]))
    channels, rate = draw(CHANNELS), draw(RATES)
    bits = draw(st.sampled_from([0, 1, 8, 12, 16, 24, 32, 64, 0xFFFF]))
    block_align = draw(st.one_of(st.just(max(1, channels * bits // 8) & 0xFFFF), st.integers(0, 0xFFFF)))
    fmt = struct.pack("<HHIIHH", tag, channels, rate, (rate * block_align) & 0xFFFFFFFF, block_align, bits)
    if tag == 0xFFFE:
        fmt += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", draw(st.sampled_from([1, 3, 2]))) + bytes(14)
    body = draw(sample_bytes())
    chunks = [(b"fmt ", fmt)]
    if draw(st.booleans()):
        chunks.append((draw(st.sampled_from([b"LIST", b"fact", b"JUNK", b"data"])), b""))  # zero-length chunk
    if draw(st.booleans()):
        chunks.append((b"fact", struct.pack("<I", draw(SIZES))))
    rf64 = draw(st.booleans())
    if rf64:
        chunks.insert(0, (b"ds64", struct.pack("<QQQ", draw(SIZES), draw(st.integers(0, 1 << 63)), 0)))
    out = b"".join(cid + struct.pack("<I", len(data)) + data for cid, data in chunks)
    declared = draw(st.one_of(st.just(len(body)), SIZES))
    out += b"data" + struct.pack("<I", declared) + body
    head = (b"RF64" if rf64 else b"RIFF") + struct.pack("<I", draw(st.one_of(st.just(len(out) + 4), SIZES))) + b"WAVE"
    return draw(st.sampled_from([".wav", ".wav", ".flac", ".mp3"])), head + out


@st.composite
def aiff_au_flac_files(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["aiff", "au", "flac"]))
    body = draw(sample_bytes())
    if kind == "aiff":
        rate = draw(st.sampled_from([b"\x40\x0e\xac\x44" + bytes(6), bytes(10), b"\x7f\xff" + bytes(8),
                                     b"\xff" * 10]))
        comm = struct.pack(">hIh", draw(st.integers(-1, 0x7FFF)), draw(SIZES), draw(st.integers(-1, 64))) + rate
        ssnd = struct.pack(">II", 0, 0) + body
        chunks = b"COMM" + struct.pack(">I", len(comm)) + comm + b"SSND" + struct.pack(">I", draw(st.one_of(
            st.just(len(ssnd)), SIZES))) + ssnd
        return ".aiff", b"FORM" + struct.pack(">I", len(chunks) + 4) + b"AIFF" + chunks
    if kind == "au":
        head = b".snd" + struct.pack(">IIIII", 24, draw(SIZES), draw(st.integers(0, 30)), draw(RATES), draw(CHANNELS))
        return ".au", head + body
    info = bytearray(34)
    info[0:4] = struct.pack(">HH", draw(st.integers(0, 0xFFFF)), draw(st.integers(0, 0xFFFF)))
    packed = (draw(st.integers(0, (1 << 20) - 1)) << 44) | (draw(st.integers(0, 7)) << 41) \
        | (draw(st.integers(0, 31)) << 36) | draw(st.integers(0, (1 << 36) - 1))
    info[10:18] = packed.to_bytes(8, "big")
    block = bytes([draw(st.sampled_from([0x00, 0x80, 0x7F]))]) + len(info).to_bytes(3, "big") + bytes(info)
    return ".flac", b"fLaC" + block + body


REAL = [(".wav", "WAV", "PCM_16"), (".wav", "WAV", "FLOAT"), (".flac", "FLAC", "PCM_16"), (".ogg", "OGG", "VORBIS"),
        (".mp3", "MP3", "MPEG_LAYER_III"), (".aiff", "AIFF", "PCM_24"), (".au", "AU", "PCM_16")]


@functools.cache
def real_files() -> list[tuple[str, bytes]]:
    """Small valid files of every format above (mono and stereo, short and ~0.3 s), written once."""
    out = []
    rng = np.random.default_rng(0)
    for ext, fmt, subtype in REAL:
        for channels, frames in ((1, 3000), (2, 7000), (1, 64)):
            buf = io.BytesIO()
            try:
                sf.write(buf, (0.3 * rng.standard_normal((frames, channels))).astype(np.float32), 22050, format=fmt,
                         subtype=subtype)
            except sf.LibsndfileError:
                continue  # this libsndfile cannot write that combination
            out.append((ext, buf.getvalue()))
    return out


@st.composite
def mutated_real_files(draw: st.DrawFn) -> tuple[str, bytes]:
    ext, original = draw(st.sampled_from(real_files()))
    data = bytearray(original)
    for _ in range(draw(st.integers(0, 8))):
        op = draw(st.sampled_from(["flip", "cut", "splice", "zero"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[i:]
        elif op == "splice":
            data[i:i] = draw(st.binary(max_size=64))
        else:
            data[i: i + draw(st.integers(1, 64))] = bytes(min(64, len(data) - i))
    return draw(st.sampled_from([ext, ext, ".wav", ".mp3"])), bytes(data)


def random_files() -> st.SearchStrategy[tuple[str, bytes]]:
    return st.tuples(st.sampled_from(EXTENSIONS), st.binary(max_size=2048))


def hostile_files() -> st.SearchStrategy[tuple[str, bytes]]:
    """Every kind of case above, in one strategy."""
    return st.one_of(random_files(), wav_files(), aiff_au_flac_files(), mutated_real_files())
