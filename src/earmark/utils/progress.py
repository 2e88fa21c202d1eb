"""Progress bars for long work (tqdm), quiet when asked or when nothing reads them."""
from __future__ import annotations

import os
import sys
from typing import Any

from tqdm.auto import tqdm


def progress(total: int | None = None, desc: str = "", unit: str = "it", disable: bool = False,
             **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr; ``EARMARK_PROGRESS=0`` turns all bars off, and logs get fewer updates."""
    if os.environ.get("EARMARK_PROGRESS", "1") == "0":
        disable = True
    interactive = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, dynamic_ncols=True,
                mininterval=0.1 if interactive else 5.0, file=sys.stderr, **kwargs)
