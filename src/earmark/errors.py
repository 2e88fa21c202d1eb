"""Errors a user can cause. Each names the file or setting at fault and what to do about it."""
from __future__ import annotations


class EarmarkError(Exception):
    """Base class of every error earmark raises on purpose."""


class AudioDecodeError(EarmarkError):
    """A file could not be decoded as audio (corrupt, empty, not audio, unsupported)."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class DatasetError(EarmarkError):
    """The dataset layout, manifest or split is unusable."""


class ConfigError(EarmarkError):
    """A recipe or override is invalid."""


class RunError(EarmarkError):
    """A run folder is missing, incomplete or inconsistent."""


class WeightsError(ConfigError):
    """Pretrained weights are missing, cannot be downloaded, or fail their checksum."""
