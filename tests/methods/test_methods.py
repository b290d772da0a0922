"""Class-specific methods: golden values by hand, gradient machinery, CAM heads, perturbations."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
import torchvision
from torch import nn

from eigencam import eigen_cam, tokens_to_grid
from eigencam.errors import (
    LayerSelectionError,
    ShapeError,
    TargetError,
    UnsupportedModelError,
)
from eigencam.methods import (
    CAM,
    AblationCAM,
    EigenGradCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    Saliency,
    ScoreCAM,
    XGradCAM,
)
from eigencam.postprocess.maps import normalize, upsample
from tiny_models import StemHeadShared, TinyCNN, TinyViT

# Activations of the golden model: two channels on a 2 x 2 grid (non-negative, so the ReLU of
# the feature extractor is the identity on them).
A0 = [[1.0, 2.0], [3.0, 4.0]]
A1 = [[0.0, 1.0], [2.0, 0.0]]


class Golden(nn.Module):
    """features (identity 1x1 conv + ReLU) -> GAP -> head; every weight set by hand."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(2, 2, 1, bias=False), nn.ReLU())
        with torch.no_grad():
            self.features[0].weight.copy_(torch.eye(2).view(2, 2, 1, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


def golden_input() -> torch.Tensor:
    return torch.tensor([[A0, A1]])


def linear(weight, bias) -> nn.Linear:
    layer = nn.Linear(len(weight[0]), len(weight))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        layer.bias.copy_(torch.tensor(bias))
    return layer


def cam_model() -> Golden:
    # logits: GAP = (2.5, 0.75) -> (2.5 - 1.5 + 0.1, 1.25 + 0.75 + 0.2, 7.5 + 0.3)
    return Golden(linear([[1.0, -2.0], [0.5, 1.0], [3.0, 0.0]], [0.1, 0.2, 0.3])).eval()


def test_cam_golden_values():
    model, x = cam_model(), golden_input()
    r = CAM(model, "features")(x)
    assert r.targets.tolist() == [[2]]  # 7.8 is the largest logit
    torch.testing.assert_close(r.raw[0, 0], torch.tensor([[3.0, 6.0], [9.0, 12.0]]))  # 3 A0
    r0 = CAM(model, "features")(x, targets=0)  # A0 - 2 A1
    torch.testing.assert_close(r0.raw[0, 0], torch.tensor([[1.0, 0.0], [-1.0, 4.0]]))
    assert r0.params["fc_layer"] == "head"
    both = CAM(model, "features")(x, targets=[[0, 1]])  # 0.5 A0 + A1
    torch.testing.assert_close(both.raw[0, 1], torch.tensor([[0.5, 2.0], [3.5, 2.0]]))


def grad_model() -> Golden:
    # h = ReLU(W1 g) with g = GAP = (2.5, 0.75): h = (3.25, -1.75) -> (3.25, 0); y = W2 h
    head = nn.Sequential(
        linear([[1.0, 1.0], [-1.0, 1.0]], [0.0, 0.0]),
        nn.ReLU(),
        linear([[2.0, 3.0], [1.0, -1.0]], [0.0, 0.0]),
    )
    return Golden(head).eval()


def test_gradcam_golden_values():
    """dy0/dg = W2[0, 0] * W1[0] = (2, 2) (the second hidden unit is off); each position of a
    2 x 2 map gets 1/4 of it: alpha = (0.5, 0.5), Grad-CAM = 0.5 A0 + 0.5 A1."""
    model, x = grad_model(), golden_input()
    r = GradCAM(model, "features")(x, targets=0)
    expected = torch.tensor([[0.5, 1.5], [2.5, 2.0]])
    torch.testing.assert_close(r.raw[0, 0], expected)
    torch.testing.assert_close(r.maps[0, 0], normalize(expected))
    # class 1: dy1/dg = 1 * W1[0] = (1, 1): alpha = (0.25, 0.25)
    torch.testing.assert_close(GradCAM(model, "features")(x, targets=1).raw[0, 0], expected / 2)
    # HiResCAM sums gradient x activation: the same numbers here, the gradients being uniform
    torch.testing.assert_close(HiResCAM(model, "features")(x, targets=0).raw[0, 0], expected)


def test_gradcampp_and_xgradcam_and_layercam_golden_values():
    model, x = grad_model(), golden_input()
    g = torch.tensor([0.5, 0.5])  # dy0/dA_k(i, j) for every position
    a = torch.tensor([A0, A1])
    # Grad-CAM++: alpha = 1 / (2 + g * sum A_k); w_k = sum_ij alpha * relu(g)
    alpha = 1.0 / (2.0 + g * a.sum(dim=(1, 2)))
    w = 4 * alpha * g
    torch.testing.assert_close(
        GradCAMPlusPlus(model, "features")(x, targets=0).raw[0, 0], (w[:, None, None] * a).sum(0)
    )
    # XGrad-CAM: w_k = sum_ij A_k g / sum_ij A_k = g
    torch.testing.assert_close(
        XGradCAM(model, "features")(x, targets=0).raw[0, 0], (g[:, None, None] * a).sum(0)
    )
    # LayerCAM: sum_k relu(g) A_k
    torch.testing.assert_close(
        LayerCAM(model, "features")(x, targets=0).raw[0, 0], (g[:, None, None] * a).sum(0)
    )


def test_callable_targets_follow_linearity():
    model = TinyCNN().eval()
    x = torch.randn(3, 3, 16, 16)
    explainer = GradCAM(model, "features")
    diff = explainer(x, targets=lambda out: out[:, 1] - out[:, 0])
    assert diff.targets is None
    expected = explainer(x, targets=1).raw - explainer(x, targets=0).raw
    torch.testing.assert_close(diff.raw, expected, rtol=1e-4, atol=1e-6)


def test_eigen_smooth_is_the_first_component_of_the_weighted_activations():
    model = TinyCNN().eval()
    x = torch.randn(2, 3, 16, 16)
    plain = GradCAM(model, "features")(x, targets=2)
    smooth = GradCAM(model, "features", eigen_smooth=True)(x, targets=2)
    with torch.no_grad():
        acts = model.features(x)
    grads = HiResCAM(model, "features")  # reuse the gradient machinery
    lg = grads._observe(x, 2)
    weighted = lg.gradients[:, 0].mean(dim=(-2, -1))[..., None, None] * acts
    expected = eigen_cam(weighted, 1, center=True).projections
    torch.testing.assert_close(smooth.raw, expected, rtol=1e-4, atol=1e-5)
    assert smooth.params["eigen_smooth"] is True and not torch.allclose(smooth.raw, plain.raw)


def test_eigengradcam_projects_gradient_times_activation():
    model = TinyCNN().eval()
    x = torch.randn(2, 3, 16, 16)
    lg = HiResCAM(model, "features")._observe(x, 1)
    weighted = lg.gradients[:, 0] * lg.activations
    for center in (False, True):
        r = EigenGradCAM(model, "features", center=center)(x, targets=1)
        expected = eigen_cam(weighted, 1, center=center).projections
        torch.testing.assert_close(r.raw, expected, rtol=1e-4, atol=1e-5)


def test_no_graph_below_the_layer_and_none_kept_after_the_call():
    model = TinyCNN().eval()
    seen: dict[str, object] = {}

    def below(module, args, output):
        seen["below_requires_grad"] = output.requires_grad

    def above(module, args, output):
        seen["above_requires_grad"] = output.requires_grad
        seen["above"] = weakref.ref(output)

    h1 = model.features[0].register_forward_hook(below)
    h2 = model.fc.register_forward_hook(above)
    try:
        r = GradCAM(model, "features.2")(torch.randn(2, 3, 16, 16))
    finally:
        h1.remove()
        h2.remove()
    assert seen["below_requires_grad"] is False  # nothing recorded below the target layer
    assert seen["above_requires_grad"] is True  # the graph starts at the layer
    gc.collect()
    assert seen["above"]() is None  # the graph (and what it saved) is gone after the call
    assert r.output.grad_fn is None and r.output.requires_grad is False


def test_inplace_relu_after_the_target_layer():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ).eval()
    r = GradCAM(model, "0")(torch.randn(2, 3, 8, 8))
    assert r.raw.shape == (2, 1, 8, 8)


def test_layer_errors_for_gradient_methods():
    model = TinyCNN().eval()
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(ShapeError, match="fc"):
        GradCAM(model, "fc")(x)
    with pytest.raises(LayerSelectionError, match="not called"):
        GradCAM(model, "dropout#3")(x)


def test_score_that_does_not_depend_on_the_layer():
    class Detached(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            self.conv(x)  # computed, not used
            return self.fc(x.mean((2, 3)))

    with pytest.raises(LayerSelectionError, match="do not depend"):
        GradCAM(Detached(), "conv")(torch.randn(1, 3, 8, 8))


class MeanTokenViT(TinyViT):
    """TinyViT whose head reads the mean of all tokens: the block's patch tokens reach the score
    (with TinyViT's class-token head their gradients are zero, a refused layer)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(len(t), -1, -1), t], dim=1)
        return self.head(self.norm(self.block(t)).mean(1))


def test_gradient_methods_on_transformer_tokens():
    model = MeanTokenViT().eval()
    x = torch.randn(2, 3, 32, 32)
    for cls in (GradCAM, LayerCAM, HiResCAM):
        r = cls(model, "block", reshape_transform=tokens_to_grid(num_prefix_tokens=1))(x)
        assert r.raw.shape == (2, 1, 4, 4) and r.maps.shape == (2, 1, 32, 32)


def test_cam_equals_gradcam_up_to_a_factor_on_gap_linear_models():
    model = torchvision.models.resnet18().eval()
    x = torch.randn(2, 3, 64, 64)
    cam = CAM(model)(x, targets=[5, 9])
    grad = GradCAM(model)(x, targets=[5, 9])
    assert cam.layer == grad.layer == "layer4" and cam.params["fc_layer"] == "fc"
    hw = cam.raw.shape[-1] * cam.raw.shape[-2]
    torch.testing.assert_close(grad.raw, cam.raw / hw, rtol=1e-3, atol=1e-5)


def test_cam_finds_densenets_functional_relu():
    model = torchvision.models.densenet121().eval()
    r = CAM(model)(torch.randn(1, 3, 64, 64))
    assert r.layer == "features" and r.params["fc_layer"] == "classifier"
    # the classifier pools ReLU(features): the map is W_c . ReLU(A), not W_c . A
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        feats = model.features(x).clamp_min(0)
    r = CAM(model)(x, targets=7)
    expected = torch.einsum("c,chw->hw", model.classifier.weight[7].detach(), feats[0])
    torch.testing.assert_close(r.raw[0, 0], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "build,layer,fc",
    [
        (torchvision.models.mobilenet_v2, "features", "classifier.1"),
        (torchvision.models.shufflenet_v2_x0_5, "conv5", "fc"),
    ],
)
def test_cam_on_other_gap_linear_architectures(build, layer, fc):
    r = CAM(build().eval())(torch.randn(1, 3, 64, 64))
    assert r.layer == layer and r.params["fc_layer"] == fc


def test_cam_refuses_models_without_a_gap_linear_head():
    x = torch.randn(1, 3, 64, 64)
    with pytest.raises(UnsupportedModelError, match="no linear layer"):
        CAM(torchvision.models.squeezenet1_1().eval())(x)  # a conv classifier, no nn.Linear
    with pytest.raises(UnsupportedModelError, match="more layers follow"):
        CAM(torchvision.models.mobilenet_v3_small().eval())(x)
    with pytest.raises(TargetError, match="callable"):
        CAM(TinyCNN())(x, targets=lambda out: out[:, 0])
    with pytest.raises(LayerSelectionError, match="fc_layer"):
        CAM(TinyCNN(), fc_layer="features.0")(x)


def test_cam_on_the_embedded_model(embedded, sample_images):
    from eigencam.io import load_image

    x = embedded.preprocessing.batch([load_image(sample_images[0])])
    r = CAM(embedded.model)(x, targets="top2")
    assert r.layer == "_swish" and r.params["fc_layer"] == "_fc"
    assert r.raw.shape == (1, 2, 7, 7)


def test_saliency_of_a_linear_model_is_the_weight_magnitude():
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 3 * 3, 4)).eval()
    x = torch.randn(2, 2, 3, 3)
    r = Saliency(model)(x, targets=[1, 3])
    w = model[1].weight.detach().view(4, 2, 3, 3)
    torch.testing.assert_close(r.raw[0, 0], w[1].abs().amax(0))
    torch.testing.assert_close(r.raw[1, 0], w[3].abs().amax(0))
    assert r.layer == "input" and r.raw.shape == (2, 1, 3, 3)
    l2 = Saliency(model, reduction="l2")(x, targets=[1, 3])
    torch.testing.assert_close(l2.raw[0, 0], w[1].square().sum(0).sqrt())
    with pytest.raises(ValueError, match="no target_layer"):
        Saliency(model, "1")(x)
    with pytest.raises(ValueError, match="reduction"):
        Saliency(model, reduction="mean")(x)


def _naive_scorecam(model, x, layer_module, target):
    """Score-CAM written out image by image and channel by channel."""
    store = {}
    handle = layer_module.register_forward_hook(lambda m, a, o: store.update(a=o))
    try:
        with torch.no_grad():
            model(x)
            acts = store["a"]
            maps = []
            for b in range(x.shape[0]):
                scores = []
                for c in range(acts.shape[1]):
                    m = acts[b, c][None, None]
                    m = torch.nn.functional.interpolate(
                        m, size=x.shape[-2:], mode="bilinear", align_corners=False
                    )[0, 0]
                    span = m.max() - m.min()
                    m = (m - m.min()) / span if span > 0 else torch.zeros_like(m)
                    scores.append(model(x[b : b + 1] * m)[0, target])
                w = torch.softmax(torch.stack(scores), 0)
                maps.append((w[:, None, None] * acts[b]).sum(0))
    finally:
        handle.remove()
    return torch.stack(maps)


def test_scorecam_matches_a_naive_loop():
    torch.manual_seed(0)
    model = TinyCNN(channels=6).eval()
    x = torch.randn(2, 3, 16, 16)
    r = ScoreCAM(model, "features", batch_size=4)(x, targets=3)
    expected = _naive_scorecam(model, x, model.features, 3)
    torch.testing.assert_close(r.raw[:, 0], expected, rtol=1e-4, atol=1e-5)
    same = ScoreCAM(model, "features", batch_size=100)(x, targets=3)
    torch.testing.assert_close(same.raw, r.raw)  # chunking does not change the result


def test_ablationcam_closed_form_on_a_gap_linear_model():
    """Zeroing channel k of a GAP + linear model lowers y_c by W[c, k] * mean(A_k)."""
    torch.manual_seed(0)
    model = TinyCNN(channels=6).eval()
    x = torch.randn(2, 3, 16, 16)
    r = AblationCAM(model, "features", batch_size=5)(x, targets=[1, 4])
    with torch.no_grad():
        acts = model.features(x)
        y = model(x)
    for b, c in enumerate([1, 4]):
        w = model.fc.weight[c].detach() * acts[b].mean(dim=(1, 2)) / y[b, c].abs()
        torch.testing.assert_close(
            r.raw[b, 0], (w[:, None, None] * acts[b]).sum(0), rtol=1e-4, atol=1e-5
        )


def test_perturbation_methods_on_tokens_and_bad_options():
    model = TinyViT().eval()
    x = torch.randn(1, 3, 32, 32)
    grid = tokens_to_grid(num_prefix_tokens=1)
    for cls in (ScoreCAM, AblationCAM):
        assert cls(model, "block", reshape_transform=grid)(x).raw.shape == (1, 1, 4, 4)
    with pytest.raises(UnsupportedModelError, match="tokens_to_grid"):
        AblationCAM(model, "block", reshape_transform=lambda t: grid(t))(x)
    with pytest.raises(ValueError, match="batch_size"):
        ScoreCAM(TinyCNN(), batch_size=0)(torch.randn(1, 3, 8, 8))


def test_maps_apply_the_relu_before_upsampling():
    """Issue 18: the ReLU at the layer's resolution, then upsampling (the peers' order)."""
    model = TinyCNN().eval()
    x = torch.randn(2, 3, 16, 16)
    r = GradCAM(model)(x)
    torch.testing.assert_close(r.maps, normalize(upsample(r.raw.clamp_min(0), (16, 16))))
    r = GradCAM(model, relu=False)(x)
    torch.testing.assert_close(r.maps, normalize(upsample(r.raw, (16, 16))))


def test_gradient_graph_starts_at_the_last_call_of_a_shared_module():
    """EfficientNet's ``_swish`` runs at the stem and at the head: once the call count is known,
    only the head's call becomes an autograd leaf, so no graph is recorded from the stem on."""
    from eigencam.capture import LayerRef
    from eigencam.methods.gradients import leaf_hook

    model = StemHeadShared()
    x = torch.randn(2, 3, 8, 8)
    ref = LayerRef("act", model.act)
    for expected, leaves in ((None, 2), (2, 1)):
        with torch.enable_grad(), leaf_hook(ref, expected) as captured:
            out = model(x)
        assert len(captured.leaves) == leaves and captured.calls == [2]
        (grad,) = torch.autograd.grad(out[:, 0].sum(), captured.leaves[-1])
        assert grad.abs().sum() > 0
    cam = GradCAM(model)
    first = cam(x, 1)
    assert first.layer == "act"
    again = cam(x, 1)  # the learned count: one leaf, same maps
    torch.testing.assert_close(again.raw, first.raw)
    torch.testing.assert_close(again.raw, GradCAM(model, "act#1")(x, 1).raw)
    model.head_calls = 3  # more calls than learned: the later leaves are the target
    torch.testing.assert_close(cam(x, 1).raw, GradCAM(model, "act#3")(x, 1).raw)
    model.head_calls = 1  # fewer: one more forward pass, the same answer
    before = model.forwards
    torch.testing.assert_close(cam(x, 1).raw, first.raw)
    assert model.forwards - before == 2


def _relu_methods() -> list[str]:
    from eigencam.methods.registry import available_methods, get_method, param_names

    return [n for n in available_methods() if "relu" in param_names(get_method(n))]


@pytest.mark.parametrize("name", _relu_methods())
def test_relu_is_applied_at_the_layers_resolution_before_upsampling(name):
    """The Grad-CAM paper's order, and the peers': clip the signed layer map, then upsample and
    normalise. Clipping after upsampling would blur negative cells into their neighbours."""
    from eigencam.methods.registry import get_method

    torch.manual_seed(0)
    model = TinyCNN().eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    # CAM needs the layer that feeds the pooling, c-MWP a non-negative one; the others take the
    # signed convolution.
    layer = "features" if name in ("cam", "cmwp") else "features.3"
    cls = get_method(name)
    explainer = cls(model, layer, relu=True)
    result = explainer(x, targets=[1, 1]) if explainer.class_specific else explainer(x)
    raw = result.raw.float()
    expected = normalize(upsample(raw.clamp_min(0), (16, 16)))
    torch.testing.assert_close(result.maps, expected, rtol=0, atol=1e-6)
    if (raw < 0).any(raw.ndim - 2).any(-1).all():  # every map has negative cells: order matters
        assert not torch.allclose(expected, normalize(upsample(raw, (16, 16)).clamp_min(0)))
