"""A model on raw waveforms trains with the default recipe, whose SpecAugment needs spectrograms."""
import torch

from earmark.config import load_recipe
from earmark.models.net import build_net
from earmark.training.module import ClassifierModule


def test_raw1d_trains_a_step_with_the_default_recipe_and_records_no_spectrogram_augmentation():
    import lightning.pytorch as pl

    recipe = load_recipe("default", ["model.name=raw1d", "augment.mixup.p=1.0"])
    assert recipe.augment.specaugment.p > 0
    module = ClassifierModule(build_net(recipe, 2), recipe, 2, steps_per_epoch=1)
    names = [a["name"] for a in module.describe_augmentation()]
    assert "SpecAugment" not in names and "Mixup" in names and len(module.spec_augment) == 0
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.randn(8, 4000) * 0.1, torch.arange(8) % 2), batch_size=4)
    trainer = pl.Trainer(fast_dev_run=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(module, loader)
    assert trainer.global_step == 2 and torch.isfinite(trainer.callback_metrics["train_loss"])
