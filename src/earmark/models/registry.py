"""The model registry: models register themselves; one factory builds any of them.

    >>> list_models("res*")
    ['res2next50', 'resnet18', 'resnet34', 'resnext101_32x8d']
    >>> net = create_model("cnn", num_classes=10)

Deep models take ``(batch, channels, frames, mels)`` spectrograms (``input="spectrogram"``) or
``(batch, samples)`` waveforms (``input="waveform"``) and return logits ``(batch, classes)``.
Classical models (``family="classical"``) are scikit-learn pipelines on summary features.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ConfigError

ModelInput = Literal["spectrogram", "waveform", "summary"]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    input: ModelInput
    builder: Callable[..., Any]
    description: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def is_deep(self) -> bool:
        return self.family != "classical"


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str | None = None, *, family: str, input: ModelInput = "spectrogram",
                   description: str = "", **defaults: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: add a model factory to the registry under ``name`` (default: the function's name)."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        key = name or fn.__name__
        if key in _REGISTRY:
            raise ValueError(f"model {key!r} is registered twice")
        doc = description or (fn.__doc__ or "").strip().splitlines()[0] if (description or fn.__doc__) else ""
        _REGISTRY[key] = ModelSpec(key, family, input, fn, doc, dict(defaults))
        return fn

    return wrap


def _ensure_loaded() -> None:
    from . import backbones, classical, cnn, crnn, efficientat, raw1d  # noqa: F401  (modules register on import)


def get_spec(name: str) -> ModelSpec:
    _ensure_loaded()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _REGISTRY[name]


def list_models(pattern: str = "*", family: str | None = None) -> list[str]:
    """Registered model names matching a shell-style pattern, optionally of one family."""
    _ensure_loaded()
    return sorted(n for n, s in _REGISTRY.items()
                  if fnmatch.fnmatch(n, pattern) and (family is None or s.family == family))


def create_model(name: str, num_classes: int, **kwargs: Any) -> Any:
    """Build a registered model for ``num_classes`` classes."""
    spec = get_spec(name)
    if num_classes < 2:
        raise ConfigError(f"a classifier needs at least 2 classes, got {num_classes}")
    args = {**spec.defaults, **kwargs}
    try:
        return spec.builder(num_classes=num_classes, **args)
    except TypeError as exc:
        raise ConfigError(f"model {name!r}: {exc}") from None
