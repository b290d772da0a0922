"""Agreement with the peers: pytorch-grad-cam, torchcam and Captum on the same model, layer,
input and target. Raw maps are compared at the layer's resolution, before any ReLU; the final
``maps`` (ReLU at the layer's resolution, then upsampled and normalised, as every peer does)
against the peers' final maps at layers with negative cells, where the order of ReLU and
upsampling matters: Pearson correlation >= 0.99 (raw) and >= 0.999 (final)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from eigencam import EigenCAM, eigen_cam
from eigencam.io import load_image
from eigencam.methods import get_method

pgc = pytest.importorskip("pytorch_grad_cam")
tcm = pytest.importorskip("torchcam.methods")
captum_attr = pytest.importorskip("captum.attr")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection  # noqa: E402

PGC = {
    "gradcam": "GradCAM",
    "gradcampp": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "hirescam": "HiResCAM",
    "scorecam": "ScoreCAM",
    "eigengradcam": "EigenGradCAM",
}
GRADIENT_FAMILY = ["gradcam", "gradcampp", "xgradcam", "layercam", "hirescam"]
TORCHCAM = {"gradcam": "GradCAM", "xgradcam": "XGradCAM", "layercam": "LayerCAM", "cam": "CAM"}


def corr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each pair of maps (first dimension: the batch)."""
    a = a.flatten(1).double()
    b = b.flatten(1).double()
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


def pgc_layer_maps(name: str, model, layer: str, x, targets) -> torch.Tensor:
    """pytorch-grad-cam's map at the layer's resolution, before its ReLU.

    Its forward/backward is run step by step to read the last call of a module called twice
    (EfficientNet's shared ``_swish``: stem, then head): ``cam(...)`` itself explains the
    first call (the 112 x 112 stem), not the head feature map we (and it, for other models)
    target.
    """
    module = dict(model.named_modules())[layer]
    tg = [ClassifierOutputTarget(t) for t in targets]
    with getattr(pgc, PGC[name])(model=model, target_layers=[module]) as cam:
        try:
            outputs = cam.activations_and_grads(x)
            grads = None
            if name != "scorecam":
                sum(t(o) for t, o in zip(tg, outputs)).backward()
                grads = cam.activations_and_grads.gradients[-1].numpy()
            else:
                cam.batch_size = 64
            acts = cam.activations_and_grads.activations[-1].numpy()
            low = cam.get_cam_image(x, module, tg, acts, grads, False)
        finally:
            for p in model.parameters():
                p.grad = None
    return torch.from_numpy(np.asarray(low, dtype=np.float32))


def torchcam_maps(name: str, model, layer: str, x, targets, size, **kwargs) -> torch.Tensor:
    """torchcam's map at the layer's resolution (normalised, no ReLU except Score-CAM's)."""
    cls = getattr(tcm, TORCHCAM.get(name, name))
    with cls(model, layer, input_shape=(3, *size), **kwargs) as extractor:
        out = model(x)
        return extractor(list(targets), out)[0].detach()


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18().eval()


@pytest.fixture(scope="module")
def photo(embedded, sample_images):
    return embedded.preprocessing.batch([load_image(sample_images[1])])  # coffee


@pytest.mark.parametrize("name", GRADIENT_FAMILY)
def test_gradient_family_matches_pytorch_grad_cam_on_resnet18(resnet, name):
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(3))
    ours = get_method(name)(resnet, "layer3")(x, targets=[3, 7])
    theirs = pgc_layer_maps(name, resnet, "layer3", x, [3, 7])
    assert theirs.shape == ours.raw[:, 0].shape == (2, 6, 6)
    c = corr(ours.raw[:, 0], theirs)
    assert float(c.min()) >= 0.99, c
    c_relu = corr(ours.raw[:, 0].clamp_min(0), theirs.clamp_min(0))
    assert float(c_relu.min()) >= 0.99, c_relu


@pytest.mark.parametrize("name", list(TORCHCAM))
def test_matches_torchcam_on_resnet18(resnet, name):
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(4))
    layer = "layer4" if name == "cam" else "layer3"
    ours = get_method(name)(resnet, layer)(x, targets=[1, 9])
    kwargs = {"fc_layer": "fc"} if name == "cam" else {}
    theirs = torchcam_maps(name, resnet, layer, x, [1, 9], (96, 96), **kwargs)
    relu = name != "cam"  # torchcam clips its gradient CAMs (not CAM) before normalising
    mine = ours.raw[:, 0].clamp_min(0) if relu else ours.raw[:, 0]
    c = corr(mine, theirs)
    assert float(c.min()) >= 0.99, c


# A convolution's output before its batch norm: signed cells. (Not ``bn2``: the residual sum
# and ReLU after it run in place, so pytorch-grad-cam, which keeps outputs by reference, would
# read the post-ReLU tensor there; we clone, see tests/methods/test_hardening.py.)
SIGNED_LAYER = "layer3.1.conv2"


def pgc_final_maps(name: str, model, layer: str, x, targets, **kwargs) -> torch.Tensor:
    """pytorch-grad-cam's own output: ReLU at the layer, normalised, resized to the input."""
    module = dict(model.named_modules())[layer]
    tg = [ClassifierOutputTarget(t) for t in targets]
    try:
        with getattr(pgc, PGC[name])(model=model, target_layers=[module], **kwargs) as cam:
            return torch.from_numpy(np.asarray(cam(input_tensor=x, targets=tg), np.float32))
    finally:
        for p in model.parameters():
            p.grad = None


@pytest.mark.parametrize("name", GRADIENT_FAMILY)
def test_final_maps_match_pytorch_grad_cam_at_a_signed_layer(resnet, name):
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(8))
    ours = get_method(name)(resnet, SIGNED_LAYER)(x, targets=[100, 7])
    theirs = pgc_final_maps(name, resnet, SIGNED_LAYER, x, [100, 7])
    c = corr(ours.maps[:, 0], theirs)
    assert float(c.min()) >= 0.999, c


@pytest.mark.parametrize("name", ["gradcam", "xgradcam", "layercam"])
def test_final_maps_match_torchcam_at_a_signed_layer(resnet, name):
    """torchcam returns its clipped, normalised maps at the layer's resolution: upsampled the
    same way they are our maps."""
    from eigencam.postprocess.maps import upsample_normalize

    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(9))
    ours = get_method(name)(resnet, SIGNED_LAYER)(x, targets=[100, 7])
    theirs = torchcam_maps(name, resnet, SIGNED_LAYER, x, [100, 7], (128, 128))
    theirs = upsample_normalize(theirs[:, None], (128, 128))[:, 0]
    c = corr(ours.maps[:, 0], theirs)
    assert float(c.min()) >= 0.999, c


def test_final_gradcam_matches_captum_at_a_signed_layer(resnet):
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(10))
    ours = get_method("gradcam")(resnet, SIGNED_LAYER)(x, targets=[100, 7])
    module = dict(resnet.named_modules())[SIGNED_LAYER]
    attr = captum_attr.LayerGradCam(resnet, module).attribute(
        x, target=[100, 7], relu_attributions=True
    )
    up = captum_attr.LayerAttribution.interpolate(attr, (128, 128), "bilinear").detach()
    c = corr(ours.maps[:, 0], up[:, 0])
    assert float(c.min()) >= 0.999, c
    assert 0.2 < float((ours.raw < 0).float().mean()) < 0.8  # where the ReLU order matters


@pytest.mark.parametrize("name", ["gradcam", "hirescam"])
def test_final_maps_match_pytorch_grad_cam_on_the_embedded_models_head_bn(embedded, photo, name):
    """Lite0's head batch norm, before its activation: the real network with negative cells."""
    model = embedded.model
    ours = get_method(name)(model, "_bn1")(photo, targets=[967])
    theirs = pgc_final_maps(name, model, "_bn1", photo, [967])
    assert float(corr(ours.maps[:, 0], theirs).min()) >= 0.999


def test_gradcam_matches_captum_on_resnet18(resnet):
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(5))
    ours = get_method("gradcam")(resnet, "layer3")(x, targets=[2, 8])
    attr = captum_attr.LayerGradCam(resnet, resnet.layer3).attribute(
        x, target=[2, 8], relu_attributions=False
    )
    c = corr(ours.raw[:, 0], attr[:, 0].detach())
    assert float(c.min()) >= 0.99, c


def test_scorecam_matches_pytorch_grad_cam_and_torchcam(resnet):
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    ours = get_method("scorecam")(resnet, "layer2", batch_size=64)(x, targets=[4])
    theirs = pgc_layer_maps("scorecam", resnet, "layer2", x, [4])
    assert float(corr(ours.raw[:, 0], theirs).min()) >= 0.99
    theirs_tc = torchcam_maps("ScoreCAM", resnet, "layer2", x, [4], (32, 32), batch_size=64)
    assert float(corr(ours.raw[:, 0].clamp_min(0), theirs_tc).min()) >= 0.99


@pytest.mark.parametrize("name", GRADIENT_FAMILY)
def test_gradient_family_matches_pytorch_grad_cam_on_the_embedded_model(embedded, photo, name):
    model = embedded.model
    target = int(model(photo).argmax())
    ours = get_method(name)(model, "_swish")(photo)
    assert ours.targets.tolist() == [[target]]
    theirs = pgc_layer_maps(name, model, "_swish", photo, [target])
    assert float(corr(ours.raw[:, 0], theirs).min()) >= 0.99


def test_cam_matches_torchcam_on_the_embedded_model(embedded, photo):
    ours = get_method("cam")(embedded.model)(photo, targets=[967])  # espresso
    theirs = torchcam_maps(
        "cam", embedded.model, "_swish", photo, [967], (224, 224), fc_layer="_fc"
    )
    assert float(corr(ours.raw[:, 0], theirs).min()) >= 0.99


@pytest.mark.slow
def test_scorecam_matches_pytorch_grad_cam_on_the_embedded_model(embedded, photo):
    """At an early block (24 channels, 56 x 56), so each method needs only 24 masked passes."""
    model = embedded.model
    ours = get_method("scorecam")(model, "_blocks.1", batch_size=24)(photo, targets=[967])
    theirs = pgc_layer_maps("scorecam", model, "_blocks.1", photo, [967])
    assert float(corr(ours.raw[:, 0], theirs).min()) >= 0.99


def test_eigengradcam_reproduces_pytorch_grad_cams_sign_and_centering(embedded, photo):
    """``center=True, sign="numpy"``: pytorch-grad-cam's EigenGradCAM map, sign included; our
    default orientation correlates positively with HiResCAM of the same class."""
    model = embedded.model
    theirs = pgc_layer_maps("eigengradcam", model, "_swish", photo, [967])
    pgc_like = get_method("eigengradcam")(model, "_swish", center=True, sign="numpy")
    ours = pgc_like(photo, targets=[967])
    assert float(corr(ours.raw[:, 0], theirs).min()) >= 0.9999
    default = get_method("eigengradcam")(model, "_swish")(photo, targets=[967])
    hires = get_method("hirescam")(model, "_swish")(photo, targets=[967])
    assert float(corr(default.raw[:, 0], hires.raw[:, 0]).min()) > 0.3


def test_eigencam_centered_matches_pytorch_grad_cam_up_to_sign(embedded, sample_images):
    x = embedded.preprocessing.batch([load_image(p) for p in sample_images])
    ours = EigenCAM(embedded.model, center=True)(x)
    store = {}
    handle = embedded.model._swish.register_forward_hook(lambda m, a, o: store.update(a=o))
    try:
        with torch.no_grad():
            embedded.model(x)
    finally:
        handle.remove()
    theirs = torch.from_numpy(get_2d_projection(store["a"].numpy()))
    c = corr(ours.raw[:, 0], theirs)
    assert float(c.abs().min()) >= 0.9999, c  # the same projection up to its sign


def test_pytorch_grad_cam_eigencam_sign_can_invert_the_map():
    """Activations with one object (a blob) on a weak background: our sign rule always puts the
    object on top; pytorch-grad-cam keeps whatever sign LAPACK returns, then its ReLU keeps the
    background for some of these images."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(7.0), torch.arange(7.0), indexing="ij")
    acts, centres = [], []
    for _ in range(64):
        cy, cx = (int(v) for v in torch.randint(1, 6, (2,), generator=g))
        blob = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 4)
        loads = torch.rand(16, generator=g) + 0.1
        acts.append(loads[:, None, None] * blob + 0.05 * torch.rand(16, 7, 7, generator=g))
        centres.append(cy * 7 + cx)
    acts = torch.stack(acts)
    centres = torch.tensor(centres)
    ours = eigen_cam(acts, 1, center=True).projections[:, 0].flatten(1)
    theirs = torch.from_numpy(get_2d_projection(acts.numpy())).flatten(1)
    assert torch.equal(ours.argmax(1), centres)  # ours: the peak is the object, every time
    inverted = corr(ours, theirs) < 0
    assert int(inverted.sum()) >= 1  # theirs: some maps are upside down...
    assert not torch.equal(theirs[inverted].argmax(1), centres[inverted])  # ...peak elsewhere
    torch.testing.assert_close(  # and up to that sign the two are the same projection
        theirs[inverted], -ours[inverted].float(), rtol=1e-3, atol=1e-4
    )
