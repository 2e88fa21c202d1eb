"""Decode any audio file to float32 mono at a chosen rate.

wav, flac, ogg and opus are decoded in-process by libsndfile (python-soundfile); mp3 in-process by
miniaudio (dr_mp3), which walks every frame and so also reads a VBR file without a Xing header whole (libsndfile
takes such a file's length from its first frame and cuts it short), with libsndfile and then ffmpeg as fallbacks;
anything else (m4a, aac, wma, video containers, ...) goes through ``ffmpeg`` when it is installed. Channels are mixed
down by averaging; rates are converted with soxr (high quality). Everything goes through one streaming
path, so a two-hour file can be read block by block with bounded memory (:func:`stream_audio`), and a
short file in one call (:func:`load_audio`).
"""
from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ..errors import AudioDecodeError

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


def _ffprobe(path: Path) -> AudioInfo:
    """Rate and channels of the first audio stream; its length only when the container states it (a length
    ffmpeg merely estimates from the bitrate, as for a VBR MP3 without a Xing header, is not trusted)."""
    cmd = ["ffprobe", "-v", "warning", "-select_streams", "a:0", "-show_entries",
           "stream=sample_rate,channels,duration", "-of", "json", str(path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise AudioDecodeError(path, "not readable as audio (ffprobe timed out)") from None
    err = proc.stderr.decode(errors="replace").strip().splitlines()
    if proc.returncode != 0:
        last = err[-1].replace(f"{path}: ", "")[:200] if err else "failed"
        raise AudioDecodeError(path, f"not readable as audio (ffmpeg: {last})")
    try:
        streams = json.loads(proc.stdout or b"{}").get("streams", [])
    except json.JSONDecodeError:
        streams = []
    if not streams:
        raise AudioDecodeError(path, "not readable as audio (no audio stream found)")
    s = streams[0]
    rate = int(s["sample_rate"])
    frames = None
    estimated = any("Estimating duration" in line for line in err)
    if s.get("duration") not in (None, "N/A") and not estimated:
        frames = int(round(float(s["duration"]) * rate))
    return AudioInfo(rate, int(s["channels"]), frames)


def audio_info(path: str | Path) -> AudioInfo:
    """Rate, channels and length of a file, without decoding it."""
    path = Path(path)
    _check_file(path)
    if path.suffix.lower() in MP3_EXTENSIONS:
        try:
            return _mp3_info(path)
        except AudioDecodeError:
            pass  # let libsndfile (then ffmpeg) try, and report their reason
    if path.suffix.lower() in NATIVE_EXTENSIONS:
        try:
            i = sf.info(str(path))
            return AudioInfo(int(i.samplerate), int(i.channels), int(i.frames) if i.frames > 0 else None)
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            if not ffmpeg_available():
                raise AudioDecodeError(path, f"not readable as audio ({_short(exc, path)})") from None
    elif not ffmpeg_available():
        raise _needs_ffmpeg(path)
    return _ffprobe(path)


def _short(exc: BaseException, path: Path | None = None) -> str:
    """The first line of a decoder's message, without the file name the error already carries."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if path is not None:
        text = text.replace(f'Error opening "{path}": ', "").replace(f"Error opening {path!r}: ", "")
        text = text.replace(f"{path}: ", "")
    return text[:200]


def _native_blocks(path: Path, block_s: float) -> tuple[AudioInfo, Iterator[np.ndarray]]:
    try:
        f = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise AudioDecodeError(path, f"not readable as audio ({_short(exc, path)})") from None
    info = AudioInfo(int(f.samplerate), int(f.channels), int(f.frames) if f.frames > 0 else None)
    block_frames = max(1, int(block_s * info.sample_rate))

    def gen() -> Iterator[np.ndarray]:
        with f:
            while True:
                try:
                    block = f.read(block_frames, dtype="float32", always_2d=True)
                except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
                    reason = f"decoding failed midway ({_short(exc, path)})"
                    raise AudioDecodeError(path, f"{reason}; the file is truncated or corrupt: re-download "
                                                 "or re-export it") from None
                if block.shape[0] == 0:
                    return
                yield block

    return info, gen()


def _mp3_info(path: Path) -> AudioInfo:
    """Rate, channels and exact length of an MP3 (dr_mp3 counts its frames without decoding them)."""
    try:
        import miniaudio
    except ImportError:
        raise AudioDecodeError(path, "miniaudio is not installed") from None
    try:
        i = miniaudio.mp3_get_file_info(str(path))
    except (miniaudio.MiniaudioError, OSError) as exc:
        raise AudioDecodeError(path, f"not readable as MP3 ({_short(exc, path)})") from None
    if i.sample_rate <= 0 or i.nchannels <= 0 or i.num_frames <= 0:
        raise AudioDecodeError(path, "not readable as MP3 (no audio frames found)")
    return AudioInfo(int(i.sample_rate), int(i.nchannels), int(i.num_frames))


def _mp3_blocks(path: Path, block_s: float) -> tuple[AudioInfo, Iterator[np.ndarray]]:
    """Stream an MP3 in-process. The info's length is what the header promises (libsndfile's reading of the
    Xing header, or its estimate), so a file cut short is still reported as truncated; a VBR file whose
    estimate is too low simply decodes longer than promised."""
    import miniaudio

    exact = _mp3_info(path)
    try:
        promised = int(sf.info(str(path)).frames)
    except (sf.LibsndfileError, RuntimeError, ValueError):
        promised = 0
    info = AudioInfo(exact.sample_rate, exact.channels, promised if promised > 0 else exact.frames)
    block_frames = max(1, int(block_s * info.sample_rate))

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
        except miniaudio.MiniaudioError as exc:
            raise AudioDecodeError(path, f"decoding failed midway ({_short(exc, path)}); the file is truncated "
                                         "or corrupt: re-download or re-export it") from None

    return info, gen()


def _ffmpeg_blocks(path: Path, block_s: float) -> tuple[AudioInfo, Iterator[np.ndarray]]:
    info = _ffprobe(path)
    block_frames = max(1, int(block_s * info.sample_rate))
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
                raise AudioDecodeError(path, f"ffmpeg failed: {err.splitlines()[-1] if err else 'unknown'}")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    return info, gen()


def _needs_ffmpeg(path: Path) -> AudioDecodeError:
    return AudioDecodeError(path, f"format {path.suffix or '(none)'} needs ffmpeg, which is not installed "
                                  "(apt-get install ffmpeg / brew install ffmpeg)")


def open_blocks(path: str | Path, block_s: float = _BLOCK_SECONDS) -> tuple[AudioInfo, Iterator[np.ndarray]]:
    """Open a file for streaming: its info and an iterator of ``(frames, channels)`` float32 blocks."""
    path = Path(path)
    _check_file(path)
    suffix = path.suffix.lower()
    if suffix in MP3_EXTENSIONS:
        try:
            return _mp3_blocks(path, block_s)
        except AudioDecodeError:
            pass  # not an MP3 dr_mp3 can read: let libsndfile (then ffmpeg) try, and report their reason
    if suffix in NATIVE_EXTENSIONS:
        try:
            return _native_blocks(path, block_s)
        except AudioDecodeError as native:
            if not ffmpeg_available():
                raise
            try:
                return _ffmpeg_blocks(path, block_s)
            except AudioDecodeError as fallback:
                raise AudioDecodeError(path, f"{native.reason}; {fallback.reason.replace('not readable as audio ', '')}"
                                       ) from None
    elif not ffmpeg_available():
        raise _needs_ffmpeg(path)
    return _ffmpeg_blocks(path, block_s)


def _to_mono(block: np.ndarray) -> np.ndarray:
    return block[:, 0] if block.shape[1] == 1 else block.mean(axis=1, dtype=np.float32)


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
    info, blocks = open_blocks(path, block_s)
    check_channels(info.channels, channels, path)
    if info.sample_rate <= 0:
        raise AudioDecodeError(path, f"invalid sample rate {info.sample_rate}")
    resampler = (
        None if info.sample_rate == sample_rate
        else soxr.ResampleStream(info.sample_rate, sample_rate, 1, dtype="float32", quality="HQ")
    )
    remaining = None if max_duration_s is None else int(round(max_duration_s * info.sample_rate))
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
    if remaining is None and decoded and _truncated(info.frames, decoded):
        raise AudioDecodeError(
            path, f"truncated: the header promises {info.frames / info.sample_rate:.2f} s but only "
                  f"{decoded / info.sample_rate:.2f} s could be decoded (the file was cut short; "
                  "re-download or re-export it)")
    if resampler is not None:
        tail = resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        if tail.size:
            yield np.ascontiguousarray(tail, dtype=np.float32)


def _truncated(header_frames: int | None, decoded: int) -> bool:
    """Whether far fewer frames decoded than the container promised (codecs pad or trim a little)."""
    return header_frames is not None and header_frames - decoded > max(0.02 * header_frames, 4096)


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
