"""Each augmentation shows its effect, and none acts in eval mode."""
import pytest
import torch

from earmark.augment import Gain, GaussianNoise, Mixup, SpecAugment, SpecWarp, TimeShift


def test_gain_scales_within_range():
    torch.manual_seed(0)
    aug = Gain(p=1.0, min_db=-6, max_db=6).train()
    x = torch.ones(200, 10)
    ratio_db = 20 * torch.log10(aug(x)[:, 0])
    assert ratio_db.min() >= -6.001 and ratio_db.max() <= 6.001 and ratio_db.std() > 2


def test_noise_hits_the_requested_snr():
    torch.manual_seed(0)
    x = torch.sin(torch.linspace(0, 400, 16000)).repeat(50, 1)
    y = GaussianNoise(p=1.0, min_snr_db=20, max_snr_db=20).train()(x)
    snr = 10 * torch.log10(x.square().mean(1) / (y - x).square().mean(1))
    assert torch.allclose(snr, torch.full_like(snr, 20.0), atol=0.5)


def test_time_shift_rolls_without_losing_samples():
    torch.manual_seed(0)
    x = torch.arange(100.0).repeat(8, 1)
    y = TimeShift(p=1.0, max_fraction=0.2).train()(x)
    assert torch.equal(y.sort(1).values, x)
    assert (y[:, 0] != 0).any() and (y[:, 0] - 0).abs().max() <= 20 or (100 - y[:, 0]).abs().min() <= 20


def test_probability_controls_how_many_examples_change():
    torch.manual_seed(0)
    x = torch.ones(2000, 4)
    changed = (Gain(p=0.3).train()(x) != x).any(1).float().mean()
    assert 0.25 < changed < 0.35


def test_specaugment_zeroes_bands_and_spans():
    torch.manual_seed(0)
    x = torch.ones(16, 1, 100, 40)
    y = SpecAugment(p=1.0, freq_masks=1, freq_width=8, time_masks=1, time_width=0.1).train()(x)
    for b in range(16):
        zero_bands = (y[b, 0] == 0).all(dim=0).sum().item()   # mel bands zeroed in every frame
        zero_frames = (y[b, 0] == 0).all(dim=1).sum().item()  # frames zeroed in every band
        assert zero_bands <= 8 and zero_frames <= 10
    assert (y == 0).float().mean() > 0.05  # something was masked
    band = (y[:, 0] == 0).all(dim=1)  # (batch, mels)
    assert band.any(), "no full frequency band was masked"


def test_specwarp_keeps_shape_and_identity_when_factors_are_zero():
    x = torch.randn(4, 1, 50, 40)
    same = SpecWarp(p=1.0, max_time=0.0, max_freq=0.0).train()(x)
    torch.testing.assert_close(same, x, atol=1e-4, rtol=0)
    torch.manual_seed(1)
    warped = SpecWarp(p=1.0, max_time=0.2, max_freq=0.2).train()(x)
    assert warped.shape == x.shape and not torch.allclose(warped, x)


def test_mixup_makes_mixed_targets():
    torch.manual_seed(0)
    x = torch.eye(8)[:, None, :].repeat(1, 3, 1)  # distinct examples
    t = torch.eye(8)
    xm, tm = Mixup(p=1.0, alpha=0.4).train()(x, t)
    torch.testing.assert_close(tm.sum(1), torch.ones(8))
    assert (tm.max(1).values < 1).all() and (tm.max(1).values >= 0.5).all()
    # features were mixed with exactly the same weights as the targets
    torch.testing.assert_close(xm[:, 0, :], tm)


@pytest.mark.parametrize("aug", [Gain(p=1.0), GaussianNoise(p=1.0), TimeShift(p=1.0), SpecWarp(p=1.0)])
def test_augmentations_are_off_in_eval_mode(aug):
    x = torch.randn(4, 1, 20, 16) if isinstance(aug, SpecWarp) else torch.randn(4, 100)
    assert torch.equal(aug.eval()(x), x)


def test_parameters_are_recorded():
    assert SpecAugment(p=0.5, freq_masks=2).describe() == {
        "name": "SpecAugment", "p": 0.5, "freq_masks": 2, "freq_width": 8, "time_masks": 2, "time_width": 0.1}
    with pytest.raises(ValueError, match="p must be"):
        Gain(p=1.5)
