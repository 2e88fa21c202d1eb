"""The models: a registry (:mod:`.registry`) and the families that register into it on import."""
from . import backbones, classical, cnn, crnn, efficientat, probe, raw1d  # noqa: F401  (each family registers its models)
