
import pytest
import torch

from earmark.config import ScheduleConfig
from earmark.training.module import hard_example_mining, lr_factor, soft_cross_entropy


def test_soft_cross_entropy_equals_torch_on_hard_targets_and_smooths():
    logits = torch.randn(6, 4)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    onehot = torch.nn.functional.one_hot(y, 4).float()
    torch.testing.assert_close(soft_cross_entropy(logits, onehot).mean(),
                               torch.nn.functional.cross_entropy(logits, y))
    torch.testing.assert_close(soft_cross_entropy(logits, onehot, 0.1).mean(),
                               torch.nn.functional.cross_entropy(logits, y, label_smoothing=0.1))


def test_hard_mining_keeps_the_hardest():
    losses = torch.arange(10.0)
    assert hard_example_mining(losses, 1.0) == losses.mean()
    assert hard_example_mining(losses, 0.9) == torch.arange(1.0, 10.0).mean()  # easiest dropped
    assert hard_example_mining(losses, 0.2) == torch.tensor(8.5)


def test_cosine_with_warm_restarts_and_warmup():
    cfg = ScheduleConfig(name="cosine_restarts", t0=10, warmup_epochs=0)
    assert lr_factor(cfg, 0, 30) == pytest.approx(1.0)
    assert lr_factor(cfg, 5, 30) == pytest.approx(0.5)
    assert lr_factor(cfg, 9.99, 30) < 0.01
    assert lr_factor(cfg, 10, 30) == pytest.approx(1.0)  # restart
    warm = ScheduleConfig(name="cosine_restarts", t0=10, warmup_epochs=2)
    assert lr_factor(warm, 1, 30) == pytest.approx(0.5)
    assert lr_factor(warm, 2, 30) == pytest.approx(1.0)
    grow = ScheduleConfig(name="cosine_restarts", t0=2, t_mult=2)
    assert lr_factor(grow, 2, 30) == pytest.approx(1.0) and lr_factor(grow, 4, 30) == pytest.approx(0.5)


def test_step_cosine_and_onecycle():
    assert lr_factor(ScheduleConfig(name="step", step_size=10, gamma=0.1), 25, 30) == pytest.approx(0.01)
    assert lr_factor(ScheduleConfig(name="cosine"), 15, 30) == pytest.approx(0.5)
    one = ScheduleConfig(name="onecycle")
    assert lr_factor(one, 0, 10) == pytest.approx(1 / 25)
    assert lr_factor(one, 3, 10) == pytest.approx(1.0)
    assert lr_factor(one, 10, 10) < 1e-3
    assert max(lr_factor(one, e / 10, 10) for e in range(100)) <= 1.0 + 1e-9
