"""EigenCAM's options beyond the paper: sign, combine, fuse_layers, flip, smooth.

Each option is checked against the same result built by hand from plain calls, and the defaults
against the paper's maths.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eigencam import EigenCAM, eigen_cam
from eigencam.errors import LayerNotFoundError, LayerSelectionError
from eigencam.postprocess.maps import gaussian_blur, normalize, upsample
from tiny_models import TinyCNN


def hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.fixture
def model():
    torch.manual_seed(0)
    return TinyCNN(channels=8)


@pytest.fixture
def x():
    return torch.randn(3, 3, 24, 20, generator=torch.Generator().manual_seed(1))


def test_defaults_are_the_papers_maths(model, x):
    plain = EigenCAM(model)(x)
    explicit = EigenCAM(model, sign="mean", combine=None, fuse_layers=(), flip=False, smooth=0.0)(x)
    torch.testing.assert_close(plain.maps, explicit.maps, rtol=0, atol=0)
    with torch.no_grad():
        acts = model.eval().features(x)
    torch.testing.assert_close(plain.raw, eigen_cam(acts).projections)
    assert plain.params["sign"] == "mean" and plain.params["flip"] is False
    assert plain.layer == "features"


def test_numpy_sign_reproduces_pytorch_grad_cam(model, x):
    svd = pytest.importorskip("pytorch_grad_cam.utils.svd_on_activations")
    with torch.no_grad():
        acts = model.eval().features(x)
    theirs = svd.get_2d_projection(acts.numpy())
    ours = EigenCAM(model, center=True, sign="numpy")(x).raw[:, 0].numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    # Our rule may disagree with numpy's arbitrary sign; numpy's never disagrees with itself.
    mean_sign = EigenCAM(model, center=True)(x).raw[:, 0].numpy()
    np.testing.assert_allclose(np.abs(mean_sign), np.abs(theirs), rtol=1e-4, atol=1e-5)


def test_centered_numpy_sign_relu_equals_pytorch_grad_cam_eigencam(model, x):
    pgc = pytest.importorskip("pytorch_grad_cam")
    model.eval()  # pytorch-grad-cam runs the model as it finds it
    theirs = pgc.EigenCAM(model, [model.features])(x, targets=None)
    ours = EigenCAM(model, center=True, sign="numpy", relu=True)(x).maps[:, 0].numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-5)  # ReLU before upsampling, as theirs
    assert hook_count(model) == 0


def test_uncentered_numpy_sign(model, x):
    with torch.no_grad():
        acts = model.eval().features(x).numpy()
    ours = EigenCAM(model, sign="numpy", n_components=2)(x).raw.numpy()
    for i in range(x.shape[0]):
        o = acts[i].reshape(acts.shape[1], -1).T
        _, _, vt = np.linalg.svd(o, full_matrices=True)
        np.testing.assert_allclose(ours[i].reshape(2, -1), (o @ vt[:2].T).T, atol=1e-4)


def test_combine_components(model, x):
    three = EigenCAM(model, n_components=3)(x)
    summed = EigenCAM(model, n_components=3, combine="sum")(x)
    energy = EigenCAM(model, n_components=3, combine="energy")(x)
    assert summed.maps.shape == energy.maps.shape == (3, 1, 24, 20)
    assert summed.explained_variance_ratio.shape == (3, 3)
    torch.testing.assert_close(summed.raw, three.raw.sum(1, keepdim=True))
    torch.testing.assert_close(energy.raw, three.raw.square().sum(1, keepdim=True).sqrt())
    one = EigenCAM(model, n_components=1, combine="sum")(x)
    torch.testing.assert_close(one.maps, EigenCAM(model)(x).maps)


def test_flip_averages_with_the_mirrored_image(model, x):
    flipped = EigenCAM(model, flip=True)(x)
    a = EigenCAM(model)(x)
    b = EigenCAM(model)(x.flip(-1))
    expected = (normalize(a.raw) + normalize(b.raw).flip(-1)) / 2
    torch.testing.assert_close(flipped.raw, expected)
    torch.testing.assert_close(flipped.maps, normalize(upsample(expected, (24, 20))))
    torch.testing.assert_close(flipped.output, a.output)  # the unflipped images' output
    assert flipped.explained_variance_ratio.shape == (3, 1)
    one = EigenCAM(model, flip=True)(x[1:2])
    torch.testing.assert_close(one.maps, flipped.maps[1:2], atol=1e-5, rtol=0)


def test_smooth_blurs_the_upsampled_map(model, x):
    smooth = EigenCAM(model, smooth=2.0)(x)
    plain = EigenCAM(model)(x)
    torch.testing.assert_close(smooth.maps, normalize(gaussian_blur(plain.maps, 2.0)))
    assert smooth.maps.amax((-2, -1)).allclose(torch.ones(3, 1))


def test_gaussian_blur_of_a_delta():
    delta = torch.zeros(1, 1, 31, 31)
    delta[0, 0, 15, 15] = 1.0
    out = gaussian_blur(delta, 2.0)[0, 0]
    assert float(out.sum()) == pytest.approx(1.0, abs=1e-5)
    assert int(out.argmax()) == 15 * 31 + 15
    torch.testing.assert_close(out, out.flip(0))
    torch.testing.assert_close(out, out.T)
    g = np.exp(-0.5 * (np.arange(-6, 7) / 2.0) ** 2)
    g /= g.sum()
    np.testing.assert_allclose(out[15, 9:22].numpy(), g * g[6], rtol=1e-5)
    assert gaussian_blur(delta, 0.0) is delta


def test_fuse_layers_averages_normalised_maps(model, x):
    fused = EigenCAM(model, fuse_layers=["features.0"])(x)
    a = EigenCAM(model, "features")(x)
    b = EigenCAM(model, "features.0")(x)
    assert fused.layer == "features+features.0"
    assert fused.raw.shape == (3, 1, 24, 20)  # the finest layer's resolution
    expected = (normalize(upsample(a.raw, (24, 20))) + normalize(b.raw)) / 2
    torch.testing.assert_close(fused.raw, expected)
    assert fused.params["fuse_layers"] == ["features.0"]
    assert hook_count(model) == 0


def test_option_errors_leave_no_hooks(model, x):
    for kwargs, err in [
        ({"sign": "random"}, ValueError),
        ({"combine": "max"}, ValueError),
        ({"smooth": -1.0}, ValueError),
        ({"smooth": "big"}, TypeError),
        ({"fuse_layers": ["auto"]}, LayerSelectionError),
        ({"fuse_layers": ["featurs.0"]}, LayerNotFoundError),
    ]:
        with pytest.raises(err):
            EigenCAM(model, **kwargs)(x)
    unused = torch.nn.Conv2d(3, 3, 1)
    model.unused = unused
    with pytest.raises(LayerSelectionError, match="not called"):
        EigenCAM(model, fuse_layers=["unused"])(x)
    assert hook_count(model) == 0


def test_flags_restored_and_input_untouched_with_every_option(model, x):
    model.train()
    before = x.clone()
    EigenCAM(
        model, flip=True, fuse_layers=["features.0"], smooth=1.0, n_components=2, combine="energy"
    )(x)
    assert model.training and all(m.training for m in model.modules())
    torch.testing.assert_close(x, before, rtol=0, atol=0)
