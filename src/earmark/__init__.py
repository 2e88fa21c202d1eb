"""earmark: from a folder of labeled audio to a trained, evaluated, served classifier.

Python API (mirrors the command line)::

    import earmark
    run = earmark.train("data/", out="runs/first", recipe="default", overrides=["train.epochs=5"])
    predictor = earmark.Predictor("runs/first")
    predictor.predict(["song.mp3"])
    earmark.evaluate("runs/first", "other-data/")
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _torchvision_shim

_torchvision_shim.apply()

__version__ = "0.1.0"

__all__ = ["__version__", "train", "evaluate", "predict", "Predictor", "load_recipe", "make_demo_dataset", "tag",
           "Tagger"]

if TYPE_CHECKING:  # pragma: no cover
    from .config import load_recipe
    from .demo import make_demo_dataset
    from .inference.predictor import Predictor, predict
    from .inference.tagger import Tagger, tag
    from .jobs.evaluate import evaluate
    from .jobs.train import train


def __getattr__(name: str) -> Any:  # lazy: `import earmark` stays cheap
    if name == "train":
        from .jobs.train import train

        return train
    if name == "evaluate":
        from .jobs.evaluate import evaluate

        return evaluate
    if name in ("Predictor", "predict"):
        from .inference import predictor

        return getattr(predictor, name)
    if name in ("Tagger", "tag"):
        from .inference import tagger

        return getattr(tagger, name)
    if name == "load_recipe":
        from .config import load_recipe

        return load_recipe
    if name == "make_demo_dataset":
        from .demo import make_demo_dataset

        return make_demo_dataset
    raise AttributeError(f"module 'earmark' has no attribute {name!r}")
