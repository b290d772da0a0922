"""Hardening of the explainer call: threads sharing a model, in-place layers after the target,
layers without spatial extent, and inputs that do not fit the model (issue 15, items 1-3, 10)."""

from __future__ import annotations

import threading

import pytest
import torch
import torchvision
from torch import nn

from eigencam import EigenCAM, GradCAM
from eigencam.errors import InputMismatchError, LayerSelectionError
from tiny_models import TinyCNN


def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=10).eval()


def layer_output(model: nn.Module, name: str, x: torch.Tensor) -> torch.Tensor:
    """The output of layer ``name`` as it left the layer (cloned in the hook)."""
    seen = {}
    handle = model.get_submodule(name).register_forward_hook(
        lambda m, i, o: seen.__setitem__("out", o.detach().clone())
    )
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return seen["out"]


def run_threads(fn, jobs, threads=4):
    """Run fn(job) for each job over ``threads`` threads; results in job order."""
    results: list = [None] * len(jobs)
    errors: list = []
    start = threading.Barrier(threads)

    def worker(k: int) -> None:
        start.wait()
        for j in range(k, len(jobs), threads):
            try:
                results[j] = fn(jobs[j])
            except Exception as err:  # collected: the test reports every one
                errors.append(err)

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors, errors
    return results


def test_one_explainer_from_many_threads_gives_the_single_thread_maps():
    model = resnet18()
    torch.manual_seed(1)
    images = [torch.randn(1, 3, 96, 96) for _ in range(16)]
    cam = EigenCAM(model, "layer3")
    expected = [cam(x).raw for x in images]
    got = run_threads(lambda x: cam(x).raw, images)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e)


def test_threads_on_a_train_mode_model_leave_flags_and_state_as_found():
    model = resnet18().train()
    flags = {n: m.training for n, m in model.named_modules()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    torch.manual_seed(2)
    images = [torch.randn(2, 3, 64, 64) for _ in range(8)]
    eigen = EigenCAM(model, "layer4")
    grad = GradCAM(model, "layer4")
    expected = [(eigen(x).raw, grad(x).raw) for x in images]
    got = run_threads(lambda x: (eigen(x).raw, grad(x).raw), images)
    for (e1, e2), (g1, g2) in zip(expected, got):
        torch.testing.assert_close(g1, e1)
        torch.testing.assert_close(g2, e2)
    assert {n: m.training for n, m in model.named_modules()} == flags
    assert {n: p.requires_grad for n, p in model.named_parameters()} == grads
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_in_place_operations_after_the_target_layer_do_not_change_its_activations():
    # torchvision's BasicBlock adds the identity into bn2's output in place, then applies an
    # in-place ReLU: the map must be bn2's own output, not the block's.
    model = resnet18()
    x = torch.randn(2, 3, 64, 64)
    truth = layer_output(model, "layer4.1.bn2", x)
    for method in (EigenCAM, GradCAM):
        result = method(model, "layer4.1.bn2")(x)
        assert result.layer == "layer4.1.bn2"
    seen = EigenCAM(model, "layer4.1.bn2")._capture(x).activations
    torch.testing.assert_close(seen, truth)
    block = EigenCAM(model, "layer4")._capture(x).activations
    assert (block - truth).abs().max() > 0.1  # the two really differ on this model


def test_auto_layer_sees_its_output_before_a_later_in_place_op():
    class InPlaceTail(TinyCNN):
        def forward(self, x):
            f = self.features(x)
            f.mul_(0).add_(1)  # wipes the feature map in place after the layer ran
            return self.fc(self.pool(f).flatten(1))

    model = InPlaceTail().eval()
    x = torch.randn(2, 3, 16, 16)
    truth = layer_output(model, "features", x)
    seen = EigenCAM(model)._capture(x)
    assert seen.layer == "features"
    torch.testing.assert_close(seen.activations, truth)


def test_a_one_by_one_layer_is_refused_with_the_reason():
    model = resnet18()
    with pytest.raises(LayerSelectionError, match=r"1 x 1.*no spatial information") as info:
        EigenCAM(model, "avgpool")(torch.randn(1, 3, 64, 64))
    assert "layer4" in str(info.value)  # names a layer that works
    with pytest.raises(LayerSelectionError, match="1 x 1"):
        GradCAM(model, "avgpool")(torch.randn(1, 3, 64, 64))


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (torch.randn(1, 1, 64, 64), r"3-channel input but got 1"),
        (torch.randn(1, 3, 64, 64).half(), r"float16.*float32"),
        (torch.randn(1, 3, 64, 64).bfloat16(), r"bfloat16.*float32"),
        (torch.randn(1, 3, 6, 6), r"6 x 6.*too small"),
    ],
)
def test_inputs_that_do_not_fit_the_model_get_a_typed_error(x, match):
    model = nn.Sequential(  # no padding: a 6 x 6 input is smaller than the second kernel
        nn.Conv2d(3, 8, 5), nn.ReLU(), nn.Conv2d(8, 8, 5), nn.AdaptiveAvgPool2d(1)
    ).eval()
    with pytest.raises(InputMismatchError, match=match) as info:
        EigenCAM(model)(x)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value.__cause__, RuntimeError)  # torch's own message is kept
