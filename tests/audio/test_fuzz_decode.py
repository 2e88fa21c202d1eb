"""Fuzzing the decoder: every hostile file ends in a typed error or valid audio, fast and in bounded memory.

A modest number of examples here (the default suite); ``bench/fuzz.py`` runs the same strategies for
minutes and records the count in docs/robustness.md.
"""
from __future__ import annotations

import resource
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings

from earmark.audio.io import audio_info, load_audio
from earmark.errors import AudioDecodeError

from ..fuzz_cases import hostile_files

SECONDS_PER_CASE = 10  # a hang is a failure: no case may take longer
MAX_GROWTH_MB = 1024  # nor grow the process's peak memory by more


class Hang(Exception):
    pass


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    def on_alarm(*_: object) -> None:
        raise Hang(f"took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def decode_case(ext: str, data: bytes, folder: Path) -> str:
    """Decode one case; returns ``"ok"`` or ``"refused"``. Anything else (an untyped exception, non-finite
    or non-float32 output, a hang) propagates as a failure."""
    path = folder / f"case{ext}"
    path.write_bytes(data)
    with time_limit(SECONDS_PER_CASE):
        try:
            audio_info(path)
            audio = load_audio(path, 16000, max_duration_s=60.0)
        except AudioDecodeError as exc:
            assert exc.reason and str(path) in str(exc)
            return "refused"
    assert audio.dtype == np.float32 and audio.ndim == 1 and np.isfinite(audio).all()
    return "ok"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


_START = peak_rss_mb()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=hostile_files())
def test_hostile_files_are_decoded_or_refused(case: tuple[str, bytes]):
    with tempfile.TemporaryDirectory() as tmp:
        decode_case(*case, Path(tmp))
    assert peak_rss_mb() - _START < MAX_GROWTH_MB
