"""Shared fixtures: a private cache, synthesized datasets, and one small trained run."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# ../shared/data beside the checkout (as in CI); EARMARK_SHARED_DATA points elsewhere (e.g. from a clean clone)
SHARED = Path(os.environ.get("EARMARK_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every test session gets its own store cache; progress bars stay off in logs."""
    os.environ["EARMARK_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ["EARMARK_PROGRESS"] = "0"
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def write_wav(path: Path, wave: np.ndarray, sr: int, subtype: str | None = None) -> Path:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave, sr, subtype=subtype)
    return path


def tone(freq: float, seconds: float, sr: int = 16000, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def make_class_folders(root: Path, per_class: int = 12, classes: tuple[str, ...] = ("tone", "knock", "hiss"),
                       sr: int = 16000, seed: int = 0, min_s: float = 1.0, max_s: float = 2.5) -> Path:
    """A small class-per-folder dataset of distinct synthesized sounds (earmark.demo's generators)."""
    from earmark.demo import synth

    rng = np.random.default_rng(seed)
    for label in classes:
        for k in range(per_class):
            write_wav(root / label / f"{label}_{k:02d}.wav", synth(label, rng.uniform(min_s, max_s), sr, rng), sr)
    return root


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_class_folders(tmp_path_factory.mktemp("synth") / "data")


FAST = ["model.name=cnn", "train.epochs=4", "train.batch_size=8", "train.early_stopping=null", "augment.mixup.p=0",
        "augment.specaugment.p=0", "train.loggers=[csv]", "train.lr=0.003", "train.schedule.warmup_epochs=0"]


@pytest.fixture(scope="session")
def trained_run(synth_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run on the synthesized data (small CNN, a few epochs): shared by read-only tests."""
    import earmark

    out = tmp_path_factory.mktemp("runs") / "run"
    earmark.train(synth_data, out, "default", FAST, show_progress=False)
    return out


def shared_dataset(name: str) -> Path:
    path = SHARED / name
    if not (path / "manifest.csv").is_file():
        pytest.skip(f"../shared/data/{name} is not available")
    return path


def shared_weights(name: str) -> Path:
    """A file of ../shared/weights (beside ../shared/data): the real EfficientAT checkpoint, its labels, a clip."""
    path = SHARED.parent / "weights" / name
    if not path.is_file():
        pytest.skip(f"../shared/weights/{name} is not available")
    return path


@pytest.fixture(scope="session")
def fsdd_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny finished run on real spoken digits (FSDD, 3 files per digit, 8 kHz, 1 epoch, one member, two
    test-time shifts). Read-only: tests that change a run copy it first."""
    import earmark

    data = shared_dataset("fsdd")
    out = tmp_path_factory.mktemp("runs") / "fsdd"
    earmark.train(data, out, "default", FAST + ["train.epochs=1", "data.max_files_per_class=3", "audio.sample_rate=8000",
                                                "features.f_max=4000", "features.hop_ms=10", "segment.length_s=0.5", "segment.hop_s=0.25",
                                                "ensemble.tta=2"], show_progress=False)
    return out


@pytest.fixture(scope="session")
def esc10_cv_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny finished cross-validation run on ESC-10 (3 clips per class, trained on their first 1.5 s, 2 folds =
    2 members weighted by validation loss, hard voting, majority vote over segments, 1 epoch).
    Read-only: tests that change a run copy it first."""
    import earmark

    data = shared_dataset("esc10")
    out = tmp_path_factory.mktemp("runs") / "esc10"
    earmark.train(data, out, "default", FAST + ["train.epochs=1", "train.batch_size=16", "data.max_files_per_class=3",
                                                "audio.max_duration_s=1.5", "split.max_folds=2", "split.val_size=0.15",
                                                "ensemble.voting=hard",
                                                "ensemble.weighted=true", "eval.aggregate=vote"], show_progress=False)
    return out
