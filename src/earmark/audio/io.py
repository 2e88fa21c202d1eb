"""Decode any audio file to float32 mono at a chosen rate.

wav, flac, ogg and opus are decoded in-process by libsndfile (python-soundfile); mp3 in-process by
miniaudio (dr_mp3), which walks every frame and so also reads a VBR file without a Xing header whole (libsndfile
takes such a file's length from its first frame and cuts it short); anything else (m4a, aac, wma, video
containers, ...) goes through ``ffmpeg`` when it is installed. One chain of decoders per format
(:func:`_chain`), each tried in turn. A file whose header states a length (:mod:`.header`) and that decodes
shorter is reported as truncated. Channels are mixed
down by averaging; rates are converted with soxr (high quality). Everything goes through one streaming
path, so a two-hour file can be read block by block with bounded memory (:func:`stream_audio`), and a
short file in one call (:func:`load_audio`).
"""
from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from ..errors import AudioDecodeError
from .header import stated_length

#: Extensions libsndfile decodes in-process.
NATIVE_EXTENSIONS = {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au"}
#: Extensions we go looking for when a folder is given; ffmpeg handles those libsndfile cannot.
AUDIO_EXTENSIONS = NATIVE_EXTENSIONS | {".m4a", ".aac", ".mp4", ".wma", ".webm", ".mka", ".amr", ".3gp"}

#: Decoded by miniaudio first: libsndfile takes an MP3's length from its first frame or Xing header, so a VBR
#: file without that header is silently cut short (9 s read as 3 s); dr_mp3 decodes every frame there is.
MP3_EXTENSIONS = {".mp3"}

_BLOCK_SECONDS = 30.0


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds before any conversion."""

    sample_rate: int
    channels: int
    frames: int | None  # None when the container does not say

    @property
    def duration_s(self) -> float | None:
        return None if self.frames is None else self.frames / self.sample_rate


def ffmpeg_available() -> bool:
    return shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None


def _check_file(path: Path) -> None:
    if not path.exists():
        raise AudioDecodeError(path, "file does not exist")
    if not path.is_file():
        raise AudioDecodeError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise AudioDecodeError(path, "empty file (0 bytes)")


#: What the decoders' Python bindings raise on hostile input: besides their own error types, plain
#: ValueError, OverflowError, ZeroDivisionError (miniaudio on a zero sample rate), MemoryError, ... (found by
#: fuzzing, tests/audio/test_fuzz_decode.py). Every one means "this decoder cannot read this file".
_DECODER_ERRORS = (Exception,)


class _CannotOpen(Exception):
    """One decoder of the chain could not open a file (the next one is tried); the reason, without the path."""


_Blocks = tuple[AudioInfo, Iterator[np.ndarray]]


@dataclass(frozen=True)
class _Decoder:
    name: str
    info: Callable[[Path], AudioInfo]
    blocks: Callable[[Path, float], _Blocks]


# libsndfile's messages for data it does not recognise, said plainly (the "does not exist" one comes from its
# MPEG reader, given bytes that hold no MPEG frame, although the file does exist).
_PLAIN = {"File does not exist or is not a regular file (possibly a pipe?).": "no audio format recognised",
          "Format not recognised.": "no audio format recognised", "": "damaged or unrecognised data"}


def _short(exc: BaseException, path: Path | None = None) -> str:
    """The first line of a decoder's message, without the file name the error already carries."""
    text = str(exc).strip().splitlines()[0].strip() if str(exc).strip() else ""
    if path is not None:
        for name in (str(path), path.name):  # the whole path first: its name is part of it
            for quoted in (repr(name), f'"{name}"', name):
                text = text.replace(f"Error opening {quoted}:", "").replace(f"{quoted}: ", "").strip()
    text = _PLAIN.get(text, text) or type(exc).__name__
    return text[:200]


def _sf_info(path: Path) -> AudioInfo:
    try:
        i = sf.info(str(path))
    except _DECODER_ERRORS as exc:
        raise _CannotOpen(_short(exc, path)) from None
    return AudioInfo(int(i.samplerate), int(i.channels), int(i.frames) if i.frames > 0 else None)


def _sf_blocks(path: Path, block_s: float) -> _Blocks:
    try:
        f = sf.SoundFile(str(path))
    except _DECODER_ERRORS as exc:
        raise _CannotOpen(_short(exc, path)) from None
    info = AudioInfo(int(f.samplerate), int(f.channels), int(f.frames) if f.frames > 0 else None)
    block_frames = _block_frames(info, block_s)

    def gen() -> Iterator[np.ndarray]:
        with f:
            while True:
                try:
                    block = f.read(block_frames, dtype="float32", always_2d=True)
                except _DECODER_ERRORS as exc:
                    raise _midway(path, _short(exc, path)) from None
                if block.shape[0] == 0:
                    return
                yield block

    return info, gen()


def _miniaudio_info(path: Path) -> AudioInfo:
    """Rate, channels and exact length (dr_mp3 and dr_flac count frames without decoding them)."""
    try:
        import miniaudio
    except ImportError:
        raise _CannotOpen("miniaudio is not installed") from None
    try:
        i = miniaudio.get_file_info(str(path))
    except _DECODER_ERRORS:
        raise _CannotOpen("no audio frames found") from None
    if i.sample_rate <= 0 or i.nchannels <= 0 or i.num_frames <= 0:
        raise _CannotOpen("no audio frames found")
    return AudioInfo(int(i.sample_rate), int(i.nchannels), int(i.num_frames))


def _miniaudio_blocks(path: Path, block_s: float) -> _Blocks:
    import miniaudio

    info = _miniaudio_info(path)
    block_frames = _block_frames(info, block_s)

    def gen() -> Iterator[np.ndarray]:
        stream = miniaudio.stream_file(str(path), output_format=miniaudio.SampleFormat.FLOAT32,
                                       nchannels=info.channels, sample_rate=info.sample_rate,
                                       frames_to_read=block_frames)
        try:
            for chunk in stream:
                block = np.frombuffer(chunk, dtype=np.float32)
                usable = block.size - block.size % info.channels
                if usable:
                    yield block[:usable].reshape(-1, info.channels)
        except _DECODER_ERRORS as exc:
            raise _midway(path, _short(exc, path)) from None

    return info, gen()


def _ffprobe(path: Path) -> AudioInfo:
    """Rate and channels of the first audio stream; its length only when the container states it (a length
    ffmpeg merely estimates from the bitrate, as for a VBR MP3 without a Xing header, is not trusted)."""
    cmd = ["ffprobe", "-v", "warning", "-select_streams", "a:0", "-show_entries",
           "stream=sample_rate,channels,duration", "-of", "json", str(path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise _CannotOpen("ffprobe timed out") from None
    err = proc.stderr.decode(errors="replace").strip().splitlines()
    if proc.returncode != 0:
        raise _CannotOpen(_short(RuntimeError(err[-1]), path) if err else "ffprobe failed")
    try:
        streams = json.loads(proc.stdout or b"{}").get("streams", [])
    except json.JSONDecodeError:
        streams = []
    if not streams:
        raise _CannotOpen("no audio stream found")
    s = streams[0]
    try:
        rate, channels = int(s["sample_rate"]), int(s["channels"])
    except (KeyError, ValueError):
        raise _CannotOpen("no sample rate or channel count in the stream") from None
    frames = None
    estimated = any("Estimating duration" in line for line in err)
    if s.get("duration") not in (None, "N/A") and not estimated:
        frames = int(round(float(s["duration"]) * rate))
    return AudioInfo(rate, channels, frames)


def _ffmpeg_blocks(path: Path, block_s: float) -> _Blocks:
    info = _ffprobe(path)
    block_frames = _block_frames(info, block_s)
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "f32le",
           "-acodec", "pcm_f32le", "-"]

    def gen() -> Iterator[np.ndarray]:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        frame_bytes = 4 * info.channels
        try:
            pending = b""
            while True:
                chunk = proc.stdout.read(block_frames * frame_bytes)
                if not chunk:
                    break
                chunk = pending + chunk
                usable = len(chunk) - len(chunk) % frame_bytes
                pending = chunk[usable:]
                if usable:
                    yield np.frombuffer(chunk[:usable], dtype="<f4").reshape(-1, info.channels)
            err = proc.stderr.read().decode(errors="replace").strip()
            if proc.wait() != 0:
                raise _midway(path, f"ffmpeg: {_short(RuntimeError(err.splitlines()[-1]), path) if err else 'failed'}")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    return info, gen()


#: Samples (frames x channels) in one decoded block at most: memory stays bounded whatever a header claims.
_MAX_BLOCK_SAMPLES = 1 << 22


def _block_frames(info: AudioInfo, block_s: float) -> int:
    return max(1, min(int(block_s * max(info.sample_rate, 1)), _MAX_BLOCK_SAMPLES // max(info.channels, 1)))


def _midway(path: Path, reason: str) -> AudioDecodeError:
    return AudioDecodeError(path, f"decoding failed midway ({reason}); the file is truncated or corrupt: "
                                  "re-download or re-export it")


_LIBSNDFILE = _Decoder("libsndfile", _sf_info, _sf_blocks)
_MINIAUDIO = _Decoder("miniaudio", _miniaudio_info, _miniaudio_blocks)
_FFMPEG = _Decoder("ffmpeg", _ffprobe, _ffmpeg_blocks)


def _chain(path: Path) -> list[_Decoder]:
    """The decoders to try for ``path``, in order.

    MP3 goes to dr_mp3 first: libsndfile takes an MP3's length from its first frame or Xing header, so a VBR
    file without that header is silently cut short (9 s read as 3 s); dr_mp3 decodes every frame there is.
    FLAC goes to dr_flac first too: it decodes a cut file up to the cut (libsndfile stops with "lost sync"),
    so the shortfall is reported as truncation. ffmpeg, when installed, is the last resort for everything.
    """
    suffix = path.suffix.lower()
    if suffix in MP3_EXTENSIONS | {".flac"}:
        chain = [_MINIAUDIO, _LIBSNDFILE]
    elif suffix in NATIVE_EXTENSIONS:
        chain = [_LIBSNDFILE]
    else:
        chain = []
    if ffmpeg_available():
        chain.append(_FFMPEG)
    if not chain:
        raise AudioDecodeError(path, f"format {path.suffix or '(none)'} needs ffmpeg, which is not installed "
                                     "(apt-get install ffmpeg / brew install ffmpeg)")
    return chain


def _first_that_opens(path: Path, open_: Callable[[_Decoder], Any]) -> Any:
    """``open_(decoder)`` for the first decoder of the chain that opens ``path``; one error naming every
    decoder's reason when none does."""
    reasons: list[str] = []
    for decoder in _chain(path):
        try:
            return open_(decoder)
        except _CannotOpen as exc:
            if str(exc) not in reasons:
                reasons.append(str(exc))
    raise AudioDecodeError(path, f"not readable as audio ({'; '.join(reasons)})")


def _with_stated_length(path: Path, info: AudioInfo) -> tuple[AudioInfo, bool]:
    """``info`` with the length its header states (see :mod:`.header`) and whether that length is exact.

    For an MP3 the stated length is libsndfile's reading of its Xing/Info header (or its estimate from the
    first frame), so a file cut short is still caught; a VBR file whose estimate is too low simply decodes
    longer than promised.
    """
    stated = stated_length(path)
    if stated is not None:
        return replace(info, frames=stated.frames), stated.exact
    if path.suffix.lower() in MP3_EXTENSIONS:
        try:
            promised = _sf_info(path).frames
        except _CannotOpen:
            promised = None
        if promised:
            return replace(info, frames=promised), False
    return info, False


def audio_info(path: str | Path) -> AudioInfo:
    """Rate, channels and length of a file, without decoding it."""
    path = Path(path)
    _check_file(path)
    info: AudioInfo = _first_that_opens(path, lambda d: d.info(path))
    stated = stated_length(path)
    return replace(info, frames=stated.frames) if stated is not None else info


def open_blocks(path: str | Path, block_s: float = _BLOCK_SECONDS) -> tuple[AudioInfo, Iterator[np.ndarray]]:
    """Open a file for streaming: its info and an iterator of ``(frames, channels)`` float32 blocks.

    The info's ``frames`` is the length the header states, where it states one."""
    info, _, blocks = _open(path, block_s)
    return info, blocks


def _open(path: str | Path, block_s: float) -> tuple[AudioInfo, bool, Iterator[np.ndarray]]:
    """:func:`open_blocks`, and whether the info's length is exact (a shortfall of even one frame is a cut)."""
    path = Path(path)
    _check_file(path)
    info, blocks = _first_that_opens(path, lambda d: d.blocks(path, block_s))
    info, exact = _with_stated_length(path, info)
    return info, exact, blocks


def _to_mono(block: np.ndarray) -> np.ndarray:
    if block.shape[1] == 1:
        return block[:, 0]
    with np.errstate(invalid="ignore", over="ignore"):  # NaN/Inf samples are refused by the caller
        return block.mean(axis=1, dtype=np.float32)


# ------------------------------------------------------------------------------------- channel selection

#: Named channels and the index they stand for (``audio.channels``).
CHANNEL_INDEX = {"left": 0, "right": 1}


def channels_needed(channels: str | int) -> int:
    """How many channels a file needs for the setting ``channels`` (``audio.channels``)."""
    if channels == "mix":
        return 1
    if channels in ("mid", "side"):
        return 2
    return CHANNEL_INDEX[channels] + 1 if isinstance(channels, str) else int(channels) + 1


def check_channels(n_channels: int, channels: str | int, path: str | Path) -> None:
    """Raise :class:`AudioDecodeError` naming ``path`` when a file of ``n_channels`` lacks what ``channels`` needs."""
    if channels not in ("mix", "left", "right", "mid", "side") and not (isinstance(channels, int) and channels >= 0):
        raise ValueError(f"unknown channel setting {channels!r}; use mix, left, right, mid, side or an index >= 0")
    need = channels_needed(channels)
    if n_channels < need:
        what = "the first two channels" if channels in ("mid", "side") else f"channel {need - 1}"
        raise AudioDecodeError(
            path, f"missing channel: audio.channels={channels} needs {what}, but the file has {n_channels} "
                  f"channel{'s' * (n_channels != 1)} (use audio.channels=mix, or a channel the file has)")


def select_channels(block: np.ndarray, channels: str | int = "mix", path: str | Path = "(audio)") -> np.ndarray:
    """What a run hears of decoded audio ``(frames, channels)``: float32 ``(frames,)``.

    ``mix`` averages every channel (a mono file passes through); ``left``/``right``/an index keeps one
    channel; ``mid`` is ``(L + R) * 0.5`` and ``side`` ``(L - R) * 0.5`` of the first two channels (the
    ONNX graph computes the same, see :mod:`earmark.inference.channel_graph`).

    Raises:
        AudioDecodeError: the block lacks the channel (naming ``path``).
    """
    if block.ndim != 2:
        raise ValueError(f"expected decoded audio (frames, channels), got shape {block.shape}")
    if channels == "mix":
        return _to_mono(block)
    check_channels(block.shape[1], channels, path)
    x = block.astype(np.float32, copy=False)
    if channels == "mid":
        return (x[:, 0] + x[:, 1]) * np.float32(0.5)
    if channels == "side":
        return (x[:, 0] - x[:, 1]) * np.float32(0.5)
    return np.ascontiguousarray(x[:, channels_needed(channels) - 1])


def stream_audio(
    path: str | Path, sample_rate: int, block_s: float = _BLOCK_SECONDS, max_duration_s: float | None = None,
    channels: str | int = "mix",
) -> Iterator[np.ndarray]:
    """Yield float32 mono blocks at ``sample_rate``; memory stays bounded whatever the file's length.

    ``channels`` (``audio.channels``): what is heard of a multichannel file, see :func:`select_channels`.

    Raises:
        AudioDecodeError: the file is missing, empty, not audio, lacks the channel ``channels`` asks for,
            truncated (far fewer frames than its header promises; raised after the last block) or holds
            NaN/Inf samples.
    """
    path = Path(path)
    info, exact, blocks = _open(path, block_s)
    check_channels(info.channels, channels, path)
    if not 0 < info.sample_rate <= _MAX_RATE:
        raise AudioDecodeError(path, f"invalid sample rate {info.sample_rate} Hz in the header")
    resampler = (
        None if info.sample_rate == sample_rate
        else soxr.ResampleStream(info.sample_rate, sample_rate, 1, dtype="float32", quality="HQ")
    )
    limit = None if max_duration_s is None else int(round(max_duration_s * info.sample_rate))
    remaining = limit
    decoded = 0
    for block in blocks:
        if remaining is not None:
            if remaining <= 0:
                break
            block = block[:remaining]
            remaining -= block.shape[0]
        decoded += block.shape[0]
        mono = select_channels(block, channels, path)
        if not np.isfinite(mono).all():
            raise AudioDecodeError(path, "contains NaN or Inf samples (a broken float file)")
        out = mono if resampler is None else resampler.resample_chunk(mono)
        if out.size:
            yield np.ascontiguousarray(out, dtype=np.float32)
    if info.frames is not None and decoded:
        expected = info.frames if limit is None else min(info.frames, limit)
        if _truncated(expected, decoded, exact):
            raise AudioDecodeError(
                path, f"truncated: the header states {_frames_s(info.frames, info.sample_rate)} but only "
                      f"{_frames_s(decoded, info.sample_rate)} could be decoded (the file was cut short; "
                      "re-download or re-export it)")
    if resampler is not None:
        tail = resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        if tail.size:
            yield np.ascontiguousarray(tail, dtype=np.float32)


#: Rates above this are not audio any decoder here produces (the largest in use are 768 kHz).
_MAX_RATE = 10_000_000


def _frames_s(frames: int, rate: int) -> str:
    return f"{frames / rate:.3f} s ({frames} frames)"


def _truncated(stated: int, decoded: int, exact: bool) -> bool:
    """Whether fewer frames decoded than the header states: any shortfall where the length is exact (PCM,
    FLAC), a large one for lossy codecs, which pad or trim a little (2% or 4096 frames)."""
    return decoded < stated if exact else stated - decoded > max(0.02 * stated, 4096)


def load_audio(
    path: str | Path,
    sample_rate: int,
    *,
    max_duration_s: float | None = None,
    min_duration_s: float = 0.0,
    reject_silent: bool = False,
    channels: str | int = "mix",
) -> np.ndarray:
    """Decode a whole file to a float32 mono array of shape ``(samples,)`` at ``sample_rate``.

    Raises:
        AudioDecodeError: unreadable, empty, NaN/Inf, without the channel ``channels`` asks for, shorter
            than ``min_duration_s``, or (with ``reject_silent``) digitally silent.
    """
    path = Path(path)
    blocks = list(stream_audio(path, sample_rate, max_duration_s=max_duration_s, channels=channels))
    audio = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
    check_audio(audio, sample_rate, path, min_duration_s=min_duration_s, reject_silent=reject_silent)
    return audio


def check_audio(
    audio: np.ndarray, sample_rate: int, path: str | Path, *, min_duration_s: float = 0.0,
    reject_silent: bool = False,
) -> None:
    """Raise :class:`AudioDecodeError` for decoded audio that cannot be used."""
    check_stream(int(audio.size), bool(np.any(audio)), sample_rate, path, min_duration_s=min_duration_s,
                 reject_silent=reject_silent)


def check_stream(
    n_samples: int, any_nonzero: bool, sample_rate: int, path: str | Path, *, min_duration_s: float = 0.0,
    reject_silent: bool = False,
) -> None:
    """The checks of :func:`check_audio` from a stream's sample count and whether any sample was non-zero."""
    if n_samples == 0:
        raise AudioDecodeError(path, "no audio samples (empty or truncated before the first frame)")
    if n_samples < max(1, int(round(min_duration_s * sample_rate))):
        raise AudioDecodeError(
            path, f"too short: {n_samples / sample_rate * 1000:.1f} ms, at least {min_duration_s * 1000:.0f} ms "
                  "needed (audio.min_duration_s)"
        )
    if reject_silent and not any_nonzero:
        raise AudioDecodeError(path, "silent: every sample is zero")


def resample(audio: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """High-quality resampling of a mono float array."""
    if orig_rate == new_rate:
        return audio.astype(np.float32, copy=False)
    return soxr.resample(audio.astype(np.float32, copy=False), orig_rate, new_rate, quality="HQ")


def write_audio(path: str | Path, audio: np.ndarray, sample_rate: int, subtype: str | None = None) -> None:
    """Write audio with soundfile (format from the extension)."""
    sf.write(str(path), audio, sample_rate, subtype=subtype)
