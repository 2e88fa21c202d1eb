"""The Python API mirrors the command line, and stays callable whatever has been imported."""
import importlib
import pkgutil

import earmark


def test_api_functions_survive_importing_every_module():
    for mod in pkgutil.walk_packages(earmark.__path__, "earmark."):
        if mod.name.startswith("earmark.serve") or mod.name.endswith("__main__"):
            continue
        importlib.import_module(mod.name)
    for name in ("train", "evaluate", "predict"):
        assert callable(getattr(earmark, name)), name
    assert earmark.train.__module__ == "earmark.jobs.train"
    assert earmark.evaluate.__module__ == "earmark.jobs.evaluate"
    assert isinstance(earmark.Predictor, type)
