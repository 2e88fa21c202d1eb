"""Optional trackers: a clear warning (once) when missing; the right logger when installed."""
import logging
import sys
import types
from pathlib import Path

import pytest

from earmark.config import load_recipe
from earmark.training import tracking


@pytest.fixture
def member_dir(tmp_path: Path) -> Path:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text("{}")
    folder = tmp_path / "run" / "folds" / "fold1" / "members" / "0"
    folder.mkdir(parents=True)
    return folder


@pytest.mark.parametrize("name", ["mlflow", "swanlab"])
def test_a_missing_tracker_warns_once_and_the_run_goes_on(name, member_dir, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, name, None)  # `import name` raises ImportError
    monkeypatch.setattr(tracking, "_warned", set())
    recipe = load_recipe("default")
    with caplog.at_level(logging.WARNING, logger="earmark.training.tracking"):
        assert tracking.optional_logger(name, recipe, member_dir) is None
        assert tracking.optional_logger(name, recipe, member_dir) is None
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "pip install" in warnings[0] and "not installed" in warnings[0]


def test_mlflow_gets_a_local_sqlite_store_under_the_run_folder(member_dir, monkeypatch):
    import lightning.pytorch.loggers.mlflow as pl_mlflow

    clients = []
    fake = types.ModuleType("mlflow")
    fake_tracking = types.ModuleType("mlflow.tracking")
    fake_tracking.MlflowClient = lambda uri: clients.append(uri) or types.SimpleNamespace(uri=uri)
    fake.tracking = fake_tracking
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    monkeypatch.setitem(sys.modules, "mlflow.tracking", fake_tracking)
    monkeypatch.setattr(pl_mlflow, "_MLFLOW_AVAILABLE", True)
    params = {}
    monkeypatch.setattr(pl_mlflow.MLFlowLogger, "log_hyperparams", lambda self, p: params.update(p))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    recipe = load_recipe("default", ["train.lr=0.002"])
    logger = tracking.optional_logger("mlflow", recipe, member_dir)
    assert isinstance(logger, pl_mlflow.MLFlowLogger)
    db = (member_dir.parents[3] / "mlflow.db").resolve()
    assert clients == [f"sqlite:///{db}"]
    assert logger._run_name == "default/fold1/m0" and logger._experiment_name == "earmark-default"
    assert params["train.lr"] == 0.002 and params["model.name"] == recipe.model.name


def test_swanlab_gets_its_lightning_logger_in_local_mode(member_dir, monkeypatch):
    made = []

    class FakeSwanLabLogger:
        def __init__(self, **kwargs):
            made.append(kwargs)

    pkg = types.ModuleType("swanlab")
    integration = types.ModuleType("swanlab.integration")
    pl_mod = types.ModuleType("swanlab.integration.pytorch_lightning")
    pl_mod.SwanLabLogger = FakeSwanLabLogger
    for name, mod in (("swanlab", pkg), ("swanlab.integration", integration),
                      ("swanlab.integration.pytorch_lightning", pl_mod)):
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.delenv("SWANLAB_MODE", raising=False)
    logger = tracking.optional_logger("swanlab", load_recipe("default"), member_dir)
    assert isinstance(logger, FakeSwanLabLogger) and len(made) == 1
    kw = made[0]
    assert kw["mode"] == "local" and kw["logdir"] == str(member_dir / "logs" / "swanlab")
    assert kw["experiment_name"] == "default/fold1/m0"
    assert kw["config"]["train.epochs"] == load_recipe("default").train.epochs


def test_unknown_tracker_is_a_clear_error(member_dir):
    with pytest.raises(ValueError, match="unknown tracker 'wandb'"):
        tracking.optional_logger("wandb", load_recipe("default"), member_dir)
