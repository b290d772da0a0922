"""Faithfulness metrics on hand-built cases: a perfect map must beat a random one, which must beat
an inverted one, for every metric."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from eigencam.evaluation.metrics.faithfulness import (
    average_drop_increase,
    blur,
    deletion_insertion,
    noisy_linear_impute,
    road,
)

H = W = 24


class RegionModel(nn.Module):
    """Class 0's logit is proportional to the mean brightness inside a fixed square."""

    def __init__(self) -> None:
        super().__init__()
        mask = torch.zeros(1, 1, H, W)
        mask[..., 6:14, 8:18] = 1
        self.register_buffer("mask", mask)

    def forward(self, x):
        inside = (x * self.mask).sum((1, 2, 3)) / (self.mask.sum() * x.shape[1])
        return torch.stack([12 * inside - 3, torch.zeros_like(inside)], dim=1)


def setup():
    torch.manual_seed(0)
    model = RegionModel()
    images = 0.15 * torch.rand(4, 3, H, W)
    images = images + 0.8 * model.mask  # bright object inside the square
    perfect = model.mask[0, 0].expand(4, H, W) + 0.01 * torch.rand(4, H, W)
    inverted = 1 - perfect
    random = torch.rand(4, H, W, generator=torch.Generator().manual_seed(1))
    targets = torch.zeros(4, dtype=torch.long)
    return model, images, {"perfect": perfect, "random": random, "inverted": inverted}, targets


def test_deletion_ranks_perfect_random_inverted():
    model, images, maps, targets = setup()
    auc = {
        k: float(deletion_insertion(model, images, m, targets, steps=12).auc.mean())
        for k, m in maps.items()
    }
    assert auc["perfect"] < auc["random"] < auc["inverted"]


def test_insertion_ranks_perfect_random_inverted():
    model, images, maps, targets = setup()
    auc = {
        k: float(
            deletion_insertion(
                model, images, m, targets, mode="insertion", baseline="blur", steps=12
            ).auc.mean()
        )
        for k, m in maps.items()
    }
    assert auc["perfect"] > auc["random"] > auc["inverted"]


def test_curve_endpoints():
    model, images, maps, targets = setup()
    curve = deletion_insertion(model, images, maps["random"], targets, steps=4)
    assert curve.fractions.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    clean = model(images).softmax(1)[:, 0]
    torch.testing.assert_close(curve.probs[:, 0], clean)  # nothing removed yet
    black = model(torch.zeros_like(images)).softmax(1)[:, 0]
    torch.testing.assert_close(curve.probs[:, -1], black)  # everything removed


def test_average_drop_and_increase():
    model, images, maps, targets = setup()
    drops = {}
    for k, m in maps.items():
        drop, increase = average_drop_increase(model, images, m, targets)
        drops[k] = float(drop.mean())
        assert increase.dtype == torch.bool
    assert drops["perfect"] < drops["random"] < drops["inverted"]


def test_road_ranks_maps():
    model, images, maps, targets = setup()
    morf = {
        k: float(road(model, images, m, targets, order="morf").auc.mean()) for k, m in maps.items()
    }
    lerf = {
        k: float(road(model, images, m, targets, order="lerf").auc.mean()) for k, m in maps.items()
    }
    assert morf["perfect"] < morf["random"] < morf["inverted"]
    assert lerf["perfect"] > lerf["random"] > lerf["inverted"]


def test_noisy_linear_imputation_solves_the_neighbour_equations():
    rng = np.random.default_rng(0)
    image = rng.random((2, 9, 11))
    removed = np.zeros((9, 11), bool)
    removed[2:6, 3:8] = True
    removed[0, 0] = True  # a corner pixel: fewer neighbours
    out = noisy_linear_impute(image, removed, noise=0.0)
    assert np.array_equal(out[:, ~removed], image[:, ~removed])
    for y, x in zip(*np.nonzero(removed)):
        total, weight = 0.0, 0.0
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if (dy or dx) and 0 <= y + dy < 9 and 0 <= x + dx < 11:
                    wgt = 1 / 6 if dy == 0 or dx == 0 else 1 / 12
                    total, weight = total + wgt * out[:, y + dy, x + dx], weight + wgt
        np.testing.assert_allclose(out[:, y, x], total / weight, rtol=1e-9, atol=1e-12)


def test_blur_preserves_constants_and_shapes():
    x = torch.full((2, 3, 16, 20), 0.3)
    torch.testing.assert_close(blur(x, 2.0), x)


def test_shape_errors():
    model, images, maps, targets = setup()
    with pytest.raises(ValueError, match="maps"):
        deletion_insertion(model, images, maps["perfect"][:, :5], targets)
    with pytest.raises(ValueError, match="targets"):
        average_drop_increase(model, images, maps["perfect"], targets[:2])
    with pytest.raises(ValueError, match="mode"):
        deletion_insertion(model, images, maps["perfect"], targets, mode="both")
