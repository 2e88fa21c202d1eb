"""Fitted scikit-learn estimators saved without pickle: arrays in safetensors, everything else in JSON.

Loading a run must never execute pickled code. An estimator is written as its class name (from an
explicit list of trusted classes), its constructor parameters and its fitted attributes; numeric arrays
go into a safetensors file, the rest (numbers, strings, tuples, nested estimators such as the steps of
a ``Pipeline``) into JSON kept in the same file's metadata. Loading rebuilds the estimator with its
constructor and sets the fitted attributes back. Anything else (an object that is not a trusted
estimator, an array of Python objects) is refused when saving, so a saved model always loads.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RunError
from ..utils.files import atomic_write

log = logging.getLogger(__name__)

_META_KEY = "earmark_sklearn"


def trusted_classes() -> dict[str, type]:
    """The estimators a saved model may contain, by qualified name."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    classes = [Pipeline, StandardScaler, LogisticRegression, KNeighborsClassifier, GaussianNB, SVC]
    return {f"{c.__module__}.{c.__qualname__}": c for c in classes}


def _qualname(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


class _Encoder:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def value(self, v: Any, key: str) -> Any:
        from sklearn.base import BaseEstimator

        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, np.ndarray):
            if v.dtype.kind not in "biuf":
                raise TypeError(f"{key}: arrays of dtype {v.dtype} cannot be saved without pickle")
            self.arrays[key] = np.ascontiguousarray(v)
            # Keep the memory layout too: BLAS sums in a layout-dependent order (bit-identical predictions).
            fortran = v.ndim > 1 and v.flags.f_contiguous and not v.flags.c_contiguous
            return {"__array__": key, "order": "F" if fortran else "C"}
        if isinstance(v, np.generic):
            if v.dtype.kind not in "biuf":
                raise TypeError(f"{key}: numpy scalar of dtype {v.dtype} cannot be saved")
            return {"__scalar__": v.dtype.str, "value": v.item()}
        if isinstance(v, tuple):
            return {"__tuple__": [self.value(x, f"{key}.{i}") for i, x in enumerate(v)]}
        if isinstance(v, list):
            return [self.value(x, f"{key}.{i}") for i, x in enumerate(v)]
        if isinstance(v, dict):
            if not all(isinstance(k, str) for k in v):
                raise TypeError(f"{key}: only dicts with string keys can be saved")
            return {"__dict__": {k: self.value(x, f"{key}.{k}") for k, x in v.items()}}
        if isinstance(v, BaseEstimator):
            return {"__estimator__": self.estimator(v, key)}
        raise TypeError(f"{key}: a {type(v).__name__} cannot be saved without pickle")

    def estimator(self, est: Any, key: str) -> dict[str, Any]:
        name = _qualname(est)
        if name not in trusted_classes():
            raise TypeError(f"{key}: {name} is not one of the trusted estimators")
        params = est.get_params(deep=False)
        state = {k: v for k, v in vars(est).items() if k not in params}
        return {"class": name,
                "params": {k: self.value(v, f"{key}.params.{k}") for k, v in params.items()},
                "state": {k: self.value(v, f"{key}.{k}") for k, v in state.items()}}


class _Decoder:
    def __init__(self, arrays: dict[str, np.ndarray], source: str) -> None:
        self.arrays, self.source = arrays, source
        self.classes = trusted_classes()

    def value(self, v: Any) -> Any:
        if isinstance(v, list):
            return [self.value(x) for x in v]
        if not isinstance(v, dict):
            return v
        if "__array__" in v:
            arr = self.arrays[v["__array__"]]
            return np.asfortranarray(arr) if v.get("order") == "F" else arr
        if "__scalar__" in v:
            return np.dtype(v["__scalar__"]).type(v["value"])
        if "__tuple__" in v:
            return tuple(self.value(x) for x in v["__tuple__"])
        if "__dict__" in v:
            return {k: self.value(x) for k, x in v["__dict__"].items()}
        if "__estimator__" in v:
            return self.estimator(v["__estimator__"])
        raise RunError(f"{self.source}: unknown entry {sorted(v)} in the saved model")

    def estimator(self, spec: dict[str, Any]) -> Any:
        cls = self.classes.get(spec["class"])
        if cls is None:
            raise RunError(f"{self.source}: {spec['class']} is not a trusted estimator; refusing to load it")
        est = cls(**{k: self.value(v) for k, v in spec["params"].items()})
        for k, v in spec["state"].items():
            setattr(est, k, self.value(v))
        return est


def save_estimator(est: Any, path: str | Path, extra: dict[str, Any] | None = None) -> int:
    """Write a fitted estimator to ``path`` (safetensors, atomically); returns the number of stored values.

    ``extra`` (JSON-serialisable) is stored beside it and returned by :func:`load_estimator`.
    """
    import sklearn
    from safetensors.numpy import save_file

    enc = _Encoder()
    tree = enc.estimator(est, "model")
    meta = {"model": tree, "sklearn": sklearn.__version__, "extra": extra or {}}
    arrays = enc.arrays or {"__empty__": np.zeros(0, dtype=np.float32)}
    atomic_write(path, lambda p: save_file(arrays, str(p), metadata={_META_KEY: json.dumps(meta)}))
    return int(sum(a.size for a in enc.arrays.values()))


def load_estimator(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """The estimator saved by :func:`save_estimator` and its ``extra`` information. Never unpickles."""
    import sklearn
    from safetensors import safe_open
    from safetensors.numpy import load_file

    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path} is missing: the classical model of this run cannot be loaded")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta_text = (f.metadata() or {}).get(_META_KEY)
        arrays = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - corrupt or foreign file
        raise RunError(f"{path} is not a readable safetensors file ({exc}); retrain this member") from None
    if meta_text is None:
        raise RunError(f"{path} holds no scikit-learn model (no {_META_KEY!r} metadata)")
    meta = json.loads(meta_text)
    if meta.get("sklearn", "").split(".")[:2] != sklearn.__version__.split(".")[:2]:
        log.warning("%s was saved with scikit-learn %s; this is %s", path, meta.get("sklearn"), sklearn.__version__)
    return _Decoder(arrays, str(path)).estimator(meta["model"]), meta.get("extra", {})
