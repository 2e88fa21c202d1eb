"""This process's memory: resident size now and at its peak (for benchmarks and memory tests).

On Linux the numbers come from ``/proc/self/status`` (``VmRSS``, ``VmHWM``), and the peak can be reset
(``/proc/self/clear_refs``), so one process can measure the peak of one step after a warm-up. Elsewhere
the peak is ``resource.getrusage``'s ``ru_maxrss`` and cannot be reset.
"""
from __future__ import annotations

import resource
import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")  # writing "5" resets VmHWM (Linux >= 4.0)


def _status_kb(key: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_bytes() -> int:
    """The largest resident set size this process has had (since the last :func:`reset_peak_rss`)."""
    kb = _status_kb("VmHWM")
    if kb is not None:
        return kb * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB elsewhere


def current_rss_bytes() -> int:
    """The resident set size now (the peak where the system does not say)."""
    kb = _status_kb("VmRSS")
    return kb * 1024 if kb is not None else peak_rss_bytes()


def reset_peak_rss() -> bool:
    """Make the peak start again from the current size; ``False`` where the system cannot."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True
