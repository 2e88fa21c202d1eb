"""Let timm and Lightning import when the installed torchvision cannot load its C++ operators.

Why: on the reference machines torch is the CPU build (``torch==2.13.0+cpu``), while the only
torchvision on the package registry is a CUDA build. Its extension ``torchvision/_C.so`` fails to load
against CPU torch, and ``import torchvision`` then dies in ``_meta_registrations.py`` with
``operator torchvision::nms does not exist``. timm imports torchvision unconditionally, and Lightning
imports it through torchmetrics, so both fail too.

What: earmark needs none of torchvision's compiled operators. If (and only if) the extension cannot be
loaded, we define the schemas of the two operators torchvision registers fake kernels for (``nms`` and
``qnms``), so that its Python import succeeds. Calling those operators would still fail, loudly. When
torchvision's extension loads (a matching CPU or CUDA install), this module does nothing.

This is the only place in earmark that knows about the problem; it runs once, from ``earmark/__init__``.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

_applied = False
_library = None  # keep the Library object alive: dropping it unregisters the schemas


def _extension_loads(package_dir: Path) -> bool:
    import torch

    for so in sorted(package_dir.glob("_C*.so")) + sorted(package_dir.glob("_C*.pyd")):
        try:
            torch.ops.load_library(str(so))
            return True
        except (OSError, RuntimeError):
            return False
    return False


def apply() -> bool:
    """Apply the workaround if it is needed. Returns True when the schemas were defined."""
    global _applied, _library
    if _applied:
        return True
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return False  # no torchvision: nothing imports it, nothing to fix
    import sys

    if "torchvision" in sys.modules:
        return False  # already imported (successfully, or the caller handled it)
    if _extension_loads(Path(spec.origin).parent):
        return False
    import torch

    _library = torch.library.Library("torchvision", "DEF")
    for name in ("nms", "qnms"):
        _library.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _applied = True
    return True
