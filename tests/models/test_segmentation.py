"""Segmentation: Eigen-CAM on the backbone, the segmentation score target for class methods,
and the segmentation summary in results.json."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from eigencam import EigenCAM, SegmentationTarget
from eigencam.capture import capture_outputs, preserved_state, resolve_named
from eigencam.errors import TargetError
from eigencam.methods import available_methods, get_method
from eigencam.methods.targets import resolve_targets
from eigencam.models import RandomWeightsWarning, load_model
from eigencam.models.outputs import segmentation_summary


@pytest.fixture(scope="module")
def deeplab():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        torch.manual_seed(0)
        return load_model("deeplabv3_resnet50")


def test_entry(deeplab):
    assert deeplab.task == "segmentation"
    assert deeplab.labels[15] == "person" and len(deeplab.labels) == 21
    assert deeplab.preprocessing.input_size == (520, 520)


def test_target_is_the_class_logits_summed_over_the_mask():
    logits = torch.zeros(2, 3, 2, 2)
    logits[0, 1] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    logits[1, 1] = torch.tensor([[-1.0, 5.0], [0.5, 0.0]])
    logits[:, 2] = 10.0 * torch.eye(2)  # class 2 wins on the diagonal
    mask = torch.tensor([[True, False], [False, True]])
    scores = SegmentationTarget(1, mask)({"out": logits})
    torch.testing.assert_close(scores, torch.tensor([1.0 + 4.0, -1.0 + 0.0]))
    # (B, H, W) masks, float masks
    per_image = torch.stack([mask, ~mask]).float()
    scores = SegmentationTarget(1, per_image)(logits)
    torch.testing.assert_close(scores, torch.tensor([5.0, 5.5]))
    # no mask: the pixels predicted as the class (off-diagonal for class 1 in image 0)
    predicted = SegmentationTarget(1)({"out": logits})
    torch.testing.assert_close(predicted, torch.tensor([2.0 + 3.0, 5.0 + 0.5]))
    torch.testing.assert_close(SegmentationTarget(2)(logits), torch.tensor([20.0, 20.0]))


def test_target_errors():
    logits = torch.zeros(1, 3, 4, 4)
    with pytest.raises(TargetError, match="3 classes"):
        SegmentationTarget(3)(logits)
    with pytest.raises(TargetError, match="class index"):
        SegmentationTarget(1.5)(logits)
    with pytest.raises(TargetError, match="mask must be"):
        SegmentationTarget(1, torch.ones(3, 3))(logits)
    with pytest.raises(TargetError, match="'out'"):
        SegmentationTarget(1)({"aux": logits})
    with pytest.raises(TargetError, match="one score per image"):
        resolve_targets(lambda out: out["out"], {"out": logits}, 1).scores({"out": logits})


def test_target_plugs_into_the_callable_target_interface(deeplab):
    """The interface class methods use: Targets.scores(output) -> (B, k), differentiable.

    A Grad-CAM by hand on the backbone (no class method may be registered on this branch):
    the gradient of the target score reaches the backbone activations and gives a map."""
    model = deeplab.model
    x = torch.rand(2, 3, 64, 64)
    ref = resolve_named(model, "backbone.layer4")
    target = resolve_targets(SegmentationTarget(15), None, 2)
    with preserved_state(model), capture_outputs([ref]) as store:
        output = model(x)
        scores = target.scores(output)
        assert scores.shape == (2, 1) and scores.requires_grad
        acts = store[ref.label]
        (grads,) = torch.autograd.grad(scores.sum(), acts)
    weights = grads.mean((2, 3), keepdim=True)
    cam = torch.relu((weights * acts).sum(1))
    assert cam.shape == (2, 8, 8) and torch.isfinite(cam).all()
    assert all(p.grad is None for p in model.parameters())


CLASS_METHODS = [m for m in available_methods() if get_method(m).class_specific]


@pytest.mark.skipif(not CLASS_METHODS, reason="no class-specific method is registered yet")
@pytest.mark.parametrize("name", CLASS_METHODS or ["none"])
def test_class_methods_explain_a_segmentation_class(deeplab, name):
    cls = get_method(name)
    if not getattr(cls, "callable_targets", True):
        pytest.skip(f"{name} explains class indices only, not a callable target")
    x = torch.rand(1, 3, 64, 64)
    # Score-CAM / Ablation-CAM run one forward pass per channel: use the 64-channel stem there.
    layer = "backbone.conv1" if name in ("scorecam", "ablationcam") else "backbone.layer4"
    try:
        if getattr(cls, "uses_layer", True):
            explainer = cls(deeplab.model, layer)
        else:
            explainer = cls(deeplab.model)
    except TypeError as err:
        pytest.skip(f"{name} needs other arguments: {err}")
    result = explainer(x, targets=SegmentationTarget(15, torch.ones(64, 64, dtype=torch.bool)))
    assert result.maps.shape[-2:] == (64, 64) and torch.isfinite(result.maps).all()


def test_eigencam_on_the_backbone_and_summary(deeplab):
    x = torch.rand(2, 3, 64, 64)
    r = EigenCAM(deeplab.model)(x)
    assert r.layer == "backbone.layer4" and r.raw.shape == (2, 1, 8, 8)
    summary = segmentation_summary(r.output, deeplab.labels, top=3)
    assert len(summary) == 2 and 1 <= len(summary[0]) <= 3
    assert abs(sum(s["fraction"] for s in summary[0]) - 1) < 1e-3 or len(summary[0]) == 3
    assert summary[0][0]["label"] in deeplab.labels
    assert segmentation_summary(torch.zeros(2, 5)) is None


def test_explain_cli_records_segments(sample_images, tmp_path):
    from eigencam.cli.main import main

    code = main(
        [
            "explain",
            str(sample_images[0]),
            "--model",
            "fcn_resnet50",
            "--input-size",
            "96",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert code == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["task"] == "segmentation" and results["layer"] == "backbone.layer4"
    rec = results["images"][0]
    assert rec["segments"] and {"index", "label", "fraction"} == set(rec["segments"][0])
