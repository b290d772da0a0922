"""CNN-Fixations and c-MWP: hand-checkable networks, exactness properties, real architectures."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from eigencam.errors import LayerSelectionError, UnsupportedModelError
from eigencam.methods import CNNFixations, ContrastiveMWP
from eigencam.methods.excitation import marginal_winning_probability
from eigencam.methods.fixations import fixation_heatmap
from eigencam.methods.graph import find_node, record, trace
from tiny_models import TinyCNN

RAW_POINTS = {"sigma": 0.0, "min_neighbors": 0.0}  # the fixation points themselves


def _set(layer: nn.Module, weight, bias=None) -> nn.Module:
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(weight, dtype=torch.float32).view_as(layer.weight))
        if bias is not None:
            layer.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return layer


class Spot(nn.Module):
    """conv (channel 0 sums its 3x3 window, channel 1 is its negative) -> ReLU -> 2x2 max-pool
    -> fc whose class 0 weighs every unit +1. A single bright pixel must be the fixation."""

    def __init__(self, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, stride=stride, padding=1, bias=False)
        _set(self.conv, torch.stack([torch.ones(3, 3), -torch.ones(3, 3)]))
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        side = 4 // stride
        self.fc = nn.Linear(2 * side * side, 2)
        _set(self.fc, torch.stack([torch.ones(2 * side * side), -torch.ones(2 * side * side)]))

    def forward(self, x):
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


@pytest.mark.parametrize("stride", [1, 2])
def test_a_single_bright_pixel_is_the_fixation(stride):
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 5, 6] = 1.0
    r = CNNFixations(Spot(stride).eval(), **RAW_POINTS)(x, targets=0)
    points = r.raw[0, 0].nonzero().tolist()
    assert points == [[5, 6]]
    assert r.layer == "input" and r.maps.shape == (1, 1, 8, 8)


class Shift(nn.Module):
    """r0 = ReLU(x); branch = 2 * r0 shifted by (1, 1) (a 3x3 kernel); out = ReLU(branch + r0).
    The fc picks the largest unit, which the branch (not the skip) produced."""

    def __init__(self) -> None:
        super().__init__()
        self.relu = nn.ReLU()
        self.branch = nn.Conv2d(1, 1, 3, padding=1, bias=False)
        kernel = torch.zeros(3, 3)
        kernel[0, 0] = 2.0  # output (y, x) reads input (y - 1, x - 1)
        _set(self.branch, kernel)
        self.fc = nn.Linear(16, 1)
        _set(self.fc, torch.ones(1, 16))

    def forward(self, x):
        r0 = self.relu(x)
        return self.fc(self.relu(self.branch(r0) + r0).flatten(1))


def test_residual_addition_follows_the_larger_branch():
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 1] = 1.0  # skip: 1 at (1, 1); branch: 2 at (2, 2): the fc's argmax is (2, 2)
    r = CNNFixations(Shift().eval(), **RAW_POINTS)(x, targets=0)
    assert r.raw[0, 0].nonzero().tolist() == [[1, 1]]  # back through the branch's kernel


def test_outliers_are_removed_and_the_blur_keeps_the_mass():
    points = torch.zeros(1, 1, 64, 64)
    points[0, 0, 20:26, 20:25] = 1.0  # a cluster of 30 fixations
    points[0, 0, 60, 2] = 1.0  # one far away
    clean = fixation_heatmap(points, sigma=0.0, radius=0.1, min_fraction=0.05)
    assert clean[0, 0, 60, 2] == 0 and clean.sum() == 30
    blurred = fixation_heatmap(points, sigma=0.05, radius=0.1, min_fraction=0.05)
    torch.testing.assert_close(blurred.sum(), torch.tensor(30.0), rtol=1e-3, atol=1e-3)
    peak = divmod(int(blurred[0, 0].argmax()), 64)
    assert 20 <= peak[0] <= 25 and 20 <= peak[1] <= 24


class Hand(nn.Module):
    """x (1 x 1 x 2) -> conv1x1 (2, 1) -> ReLU -> flatten -> fc1 -> ReLU -> fc2."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = _set(nn.Conv2d(1, 2, 1, bias=False), [2.0, 1.0])
        self.relu = nn.ReLU()
        self.fc1 = _set(
            nn.Linear(4, 3),
            [[1.0, -1.0, 2.0, 0.0], [0.5, 0.5, -1.0, 1.0], [-1.0, 1.0, 1.0, 1.0]],
            [0.0, 0.0, 0.0],
        )
        self.fc2 = _set(nn.Linear(3, 2), [[1.0, 2.0, -1.0], [-1.0, 1.0, 2.0]], [0.0, 0.0])

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(self.relu(self.conv(x)).flatten(1))))


def test_mwp_by_hand():
    """R = ReLU(conv x) = (2, 4 | 1, 2); h = ReLU(fc1 R) = (0, 4, 5).
    Class 0: Z = 4*2 = 8, P(h) = (0, 1, 0); Z(h1) = 2*.5 + 4*.5 + 2*1 = 5,
    P(R) = (2*.5, 4*.5, 0, 2*1) / 5 = (.2, .4, 0, .4).
    Dual (-W2[0])+ = (0, 0, 1): P(h) = (0, 0, 1); Z(h2) = 4 + 1 + 2 = 7,
    P(R) = (0, 4, 1, 2) / 7."""
    model = Hand().eval()
    x = torch.tensor([[[[1.0, 2.0]]]])
    traced = record(trace(model, "cmwp"), x)
    node = find_node(traced, _ref(model, "relu"))
    target, dual = marginal_winning_probability(traced, node, torch.tensor([[0]]))
    torch.testing.assert_close(target[0, 0].flatten(), torch.tensor([0.2, 0.4, 0.0, 0.4]))
    torch.testing.assert_close(dual[0, 0].flatten(), torch.tensor([0.0, 4.0, 1.0, 2.0]) / 7)
    r = ContrastiveMWP(model, "relu")(x, targets=0)
    expected = torch.tensor([[0.2 - 1 / 7, 0.8 - 6 / 7]])
    torch.testing.assert_close(r.raw[0, 0], expected)
    assert r.targets.tolist() == [[0]]


def _ref(model, name):
    from eigencam.capture.layers import resolve_named

    return resolve_named(model, name)


class Residual(nn.Module):
    def __init__(self, fused: bool, weight: torch.Tensor) -> None:
        super().__init__()
        self.fused = fused
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv = nn.Conv2d(4, 4, 1, bias=False)
        _set(self.conv, weight + torch.eye(4) if fused else weight)
        self.out = nn.ReLU()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        r0 = self.relu(self.stem(x))
        z = self.conv(r0) if self.fused else self.conv(r0) + r0
        return self.fc(self.out(z).mean((2, 3)))


def test_residual_block_shares_its_normaliser():
    """conv(r0) + r0 is the convolution with weight W + I; with a non-negative diagonal the
    excitatory weights are W+ + I, so the residual block must give the fused block's MWP."""
    torch.manual_seed(0)
    weight = torch.randn(4, 4)
    weight.diagonal().abs_()
    res, fused = Residual(False, weight).eval(), Residual(True, weight).eval()
    fused.load_state_dict(res.state_dict() | {"conv.weight": fused.conv.weight}, strict=True)
    x = torch.randn(2, 3, 6, 6)
    a = ContrastiveMWP(res, "relu")(x, targets=[0, 2])
    b = ContrastiveMWP(fused, "relu")(x, targets=[0, 2])
    torch.testing.assert_close(a.raw, b.raw, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "build,size,layer",
    [
        (torchvision.models.vgg11, 32, "features.19"),
        (torchvision.models.resnet18, 64, "layer4"),
        (torchvision.models.resnet18, 64, "layer3"),
    ],
)
def test_mwp_is_a_probability_on_real_architectures(build, size, layer):
    """At a layer every path to the output crosses, the MWP of each image sums to 1 (the
    residual blocks above it included)."""
    torch.manual_seed(0)
    model = build().eval()
    x = torch.randn(2, 3, size, size)
    traced = record(trace(model, "cmwp"), x)
    node = find_node(traced, _ref_call(model, layer))
    target, dual = marginal_winning_probability(traced, node, torch.tensor([[1], [7]]))
    assert (target >= 0).all() and (dual >= 0).all()
    torch.testing.assert_close(target.sum(dim=(2, 3, 4)), torch.ones(2, 1), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(dual.sum(dim=(2, 3, 4)), torch.ones(2, 1), rtol=1e-4, atol=1e-4)


def _ref_call(model, spec):
    from eigencam.capture.layers import resolve_named

    return resolve_named(model, spec)


@pytest.mark.parametrize(
    "build,size,targets",
    [
        (torchvision.models.vgg16, 32, "top1"),
        (torchvision.models.alexnet, 64, "top2"),
        (torchvision.models.resnet18, 64, "top2"),
        (torchvision.models.mobilenet_v2, 32, "top1"),
    ],
)
def test_graph_methods_on_torchvision_architectures(build, size, targets):
    torch.manual_seed(0)
    model = build().eval()
    x = torch.randn(2, 3, size, size)
    k = int(targets[3:])
    fix = CNNFixations(model)(x, targets=targets)
    assert fix.raw.shape == (2, k, size, size) and fix.raw.flatten(2).amax(-1).min() > 0
    mwp = ContrastiveMWP(model)(x)
    assert mwp.raw.shape[:2] == (2, 1) and torch.isfinite(mwp.raw).all()
    assert mwp.raw.abs().amax() > 0


def test_graph_methods_on_the_embedded_model(embedded, sample_images):
    from eigencam.io import load_image

    x = embedded.preprocessing.batch([load_image(sample_images[1])])  # coffee
    fix = CNNFixations(embedded.model)(x)
    assert fix.raw.shape == (1, 1, 224, 224) and fix.raw.max() > 0
    mwp = ContrastiveMWP(embedded.model)(x)
    assert mwp.layer == "_swish" and mwp.raw.shape == (1, 1, 7, 7)


def test_unsupported_operations_are_named():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    ).eval()
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(UnsupportedModelError, match="SiLU"):
        CNNFixations(model)(x)
    with pytest.raises(UnsupportedModelError, match="SiLU"):
        ContrastiveMWP(model, "0")(x)  # SiLU sits between the layer and the output

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            y = self.conv(x)
            if y.sum() > 0:  # data-dependent control flow
                y = -y
            return self.fc(y.mean((2, 3)))

    with pytest.raises(UnsupportedModelError, match="torch.fx cannot trace"):
        CNNFixations(Branchy())(x)


def test_graph_method_errors():
    model = TinyCNN().eval()
    x = torch.randn(1, 3, 16, 16)
    with pytest.raises(LayerSelectionError, match="negative values"):
        ContrastiveMWP(model, "features.0")(x)
    with pytest.raises(ValueError, match="no target_layer"):
        CNNFixations(model, "features")(x)
    with pytest.raises(ValueError, match="sigma"):
        CNNFixations(model, sigma=2.0)(x)
    with pytest.raises(ValueError, match="eval_mode"):
        ContrastiveMWP(model, eval_mode=False)(x)
