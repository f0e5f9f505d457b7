"""Losses: hand-computed values, FOV awareness (outside pixels change nothing), combination by weight."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from vessel_lightning.config import CONFIG_DIR
from vessel_lightning.training.losses import (
    LOSS_TERMS,
    BCELoss,
    DiceLoss,
    TverskyLoss,
    build_loss,
    soft_skeleton,
)


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 1, 16, 12, generator=g)
    target = (torch.rand(2, 1, 16, 12, generator=g) > 0.7).float()
    fov = torch.zeros(2, 1, 16, 12)
    fov[:, :, 2:14, 2:10] = 1
    return logits, target, fov


def test_dice_matches_hand_computation() -> None:
    logits = torch.tensor([[[[0.0, 2.0], [-1.0, 3.0]]]])
    target = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]])
    fov = torch.tensor([[[[1.0, 1.0], [1.0, 0.0]]]])  # the last pixel is outside
    p = torch.sigmoid(logits).flatten()[:3]
    t = target.flatten()[:3]
    expected = 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
    torch.testing.assert_close(DiceLoss(smooth=1.0)(logits, target, fov), expected)


def test_bce_is_mean_over_fov_pixels() -> None:
    logits, target, fov = _batch()
    inside = fov > 0.5
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[inside], target[inside])
    torch.testing.assert_close(BCELoss()(logits, target, fov), expected)


@pytest.mark.parametrize("name", sorted(LOSS_TERMS))
def test_pixels_outside_fov_change_nothing(name: str) -> None:
    loss = LOSS_TERMS[name]()
    logits, target, fov = _batch()
    outside = fov < 0.5
    logits2 = torch.where(outside, torch.randn_like(logits) * 10, logits).requires_grad_(True)
    target2 = torch.where(outside, 1 - target, target)
    torch.testing.assert_close(loss(logits, target, fov), loss(logits2, target2, fov))
    loss(logits2, target2, fov).backward()
    assert logits2.grad[outside].abs().max() == 0
    assert logits2.grad[~outside].abs().max() > 0


@pytest.mark.parametrize("name", sorted(LOSS_TERMS))
def test_perfect_prediction_scores_lower_than_a_wrong_one(name: str) -> None:
    _, target, fov = _batch()
    loss = LOSS_TERMS[name]()
    perfect = (target * 2 - 1) * 20
    assert loss(perfect, target, fov) < 0.05
    assert loss(-perfect, target, fov) > loss(perfect, target, fov) + 0.2


def test_tversky_with_equal_weights_is_dice() -> None:
    logits, target, fov = _batch()
    tversky = TverskyLoss(0.5, 0.5, smooth=0.0)(logits, target, fov)
    torch.testing.assert_close(tversky, DiceLoss(smooth=0.0)(logits, target, fov))


def test_soft_skeleton_thins_a_thick_bar() -> None:
    bar = torch.zeros(1, 1, 21, 21)
    bar[..., 7:14, 2:19] = 1  # 7 px thick
    skel = soft_skeleton(bar, iterations=10)
    assert skel[..., 10, 5:16].min() > 0.5  # the centre line survives
    assert skel[..., 7, :].max() == 0 and skel[..., 13, :].max() == 0  # the edges do not
    assert skel.sum() < bar.sum() / 3


def test_build_loss_sums_weighted_terms_and_reports_them() -> None:
    logits, target, fov = _batch()
    loss = build_loss({"dice": 2.0, "bce": {"weight": 0.5, "pos_weight": 3.0}, "focal": 0})
    total, parts = loss(logits, target, fov)
    assert set(parts) == {"dice", "bce"}  # a zero weight drops the term
    dice = DiceLoss()(logits, target, fov)
    bce = BCELoss(pos_weight=3.0)(logits, target, fov)
    torch.testing.assert_close(total, 2.0 * dice + 0.5 * bce)
    with pytest.raises(KeyError, match="unknown loss term"):
        build_loss({"dcie": 1.0})
    with pytest.raises(ValueError, match="non-zero weight"):
        build_loss({"dice": 0.0})


@pytest.mark.parametrize("path", sorted((CONFIG_DIR / "loss").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_loss_config_builds(path) -> None:
    spec = OmegaConf.to_container(OmegaConf.load(path))
    logits, target, fov = _batch()
    total, parts = build_loss(spec)(logits, target, fov)
    assert set(parts) == {k for k, v in spec.items() if v} and torch.isfinite(total)
