"""One checklist run over every method in the registry (tiny models, 32-px inputs)."""

from __future__ import annotations

import pytest
import torch

from eigencam.errors import EigenCAMError
from eigencam.methods import available_methods, get_method
from tiny_models import Boom, ExplodingCNN, TinyCNN

METHODS = available_methods()
CLASS_METHODS = [m for m in METHODS if get_method(m).class_specific]
AGNOSTIC = [m for m in METHODS if not get_method(m).class_specific]


def hook_count(model: torch.nn.Module) -> int:
    return sum(
        len(m._forward_hooks)
        + len(m._forward_pre_hooks)
        + len(m._backward_hooks)
        + len(getattr(m, "_backward_pre_hooks", {}))
        for m in model.modules()
    )


def make(name: str, model: torch.nn.Module, **kwargs):
    cls = get_method(name)
    if name in ("scorecam", "ablationcam"):
        kwargs.setdefault("batch_size", 5)
    return cls(model, **kwargs)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return TinyCNN(channels=4, classes=5).eval()


@pytest.fixture(scope="module")
def x():
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", METHODS)
def test_registry_metadata_is_complete(name):
    from eigencam.methods import method_info

    cls = get_method(name)
    info = method_info(name)
    assert cls.name == name == name.lower()
    for key in ("summary", "paper", "layer_requirement", "cost"):
        assert isinstance(info[key], str) and info[key], (name, key)
    assert isinstance(cls.needs_gradients, bool) and isinstance(cls.class_specific, bool)


@pytest.mark.parametrize("name", METHODS)
def test_shapes_dtype_device_and_range(name, model, x):
    r = make(name, model)(x)
    assert r.method == name
    assert r.maps.shape == (3, 1, 32, 32)
    assert r.maps.dtype == torch.float32 and r.raw.dtype == torch.float32
    assert r.maps.device == x.device and r.raw.device == x.device
    assert r.raw.ndim == 4 and r.raw.shape[:2] == (3, 1)
    assert float(r.maps.min()) >= 0.0 and float(r.maps.max()) <= 1.0
    assert torch.isfinite(r.raw).all()
    assert not r.maps.requires_grad and not r.raw.requires_grad
    assert r.output.shape == (3, 5) and not r.output.requires_grad
    assert "relu" in r.params
    if get_method(name).class_specific:
        assert r.targets.dtype == torch.int64 and r.targets.shape == (3, 1)
        assert r.targets[:, 0].tolist() == r.output.argmax(1).tolist()
    else:
        assert r.targets is None


@pytest.mark.parametrize("name", METHODS)
def test_batch_of_one_equals_batch_of_n(name, model, x):
    full = make(name, model)(x)
    for i in range(x.shape[0]):
        one = make(name, model)(x[i : i + 1])
        torch.testing.assert_close(one.raw[0], full.raw[i], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(one.maps[0], full.maps[i], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", METHODS)
def test_hooks_removed_and_flags_restored_after_success(name, x):
    model = TinyCNN(channels=4)
    model.train()
    model.features[1].eval()  # a mixed state must come back exactly
    model.fc.weight.requires_grad_(False)
    training = [m.training for m in model.modules()]
    grads = [p.requires_grad for p in model.parameters()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    make(name, model)(x)
    assert hook_count(model) == 0
    assert [m.training for m in model.modules()] == training
    assert [p.requires_grad for p in model.parameters()] == grads
    for k, v in model.state_dict().items():  # eval mode for the call: BN statistics untouched
        assert torch.equal(v, state[k]), k
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("name", METHODS)
def test_hooks_removed_and_flags_restored_after_an_exception(name):
    model = ExplodingCNN(channels=4)
    model.train()
    model.fc.weight.requires_grad_(False)
    training = [m.training for m in model.modules()]
    grads = [p.requires_grad for p in model.parameters()]
    layer = "auto" if not get_method(name).uses_layer else "features"
    with pytest.raises((Boom, EigenCAMError)) as info:
        make(name, model, **({} if layer == "auto" else {"target_layer": layer}))(
            torch.randn(2, 3, 16, 16)
        )
    if isinstance(info.value, EigenCAMError):  # graph methods trace first: the cause is kept
        assert isinstance(info.value.__cause__, Boom)
    assert hook_count(model) == 0
    assert [m.training for m in model.modules()] == training
    assert [p.requires_grad for p in model.parameters()] == grads
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("name", METHODS)
def test_input_not_mutated_and_no_gradient_left_behind(name, model):
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    before = x.detach().clone()
    r = make(name, model)(x)
    assert torch.equal(x.detach(), before)
    assert x.grad is None
    assert all(p.grad is None for p in model.parameters())
    assert not r.maps.requires_grad


@pytest.mark.parametrize("name", METHODS)
def test_works_inside_no_grad_and_inference_mode(name, model, x):
    ref = make(name, model)(x)
    with torch.no_grad():
        a = make(name, model)(x)
    with torch.inference_mode():
        b = make(name, model)(x)
    torch.testing.assert_close(a.maps, ref.maps)
    torch.testing.assert_close(b.maps.clone(), ref.maps)


@pytest.mark.parametrize("name", METHODS)
def test_frozen_model(name, x):
    model = TinyCNN(channels=4).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    r = make(name, model)(x)
    assert r.maps.shape == (3, 1, 32, 32)
    assert not any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("name", CLASS_METHODS)
def test_targets_are_respected(name, model, x):
    explainer = make(name, model)
    r = explainer(x, targets=[1, 4, 0])
    assert r.targets.tolist() == [[1], [4], [0]]
    for i, t in enumerate([1, 4, 0]):
        single = explainer(x[i : i + 1], targets=t)
        torch.testing.assert_close(single.raw[0], r.raw[i], rtol=1e-4, atol=1e-5)
    top = explainer(x, targets="top2")
    assert top.maps.shape == (3, 2, 32, 32) and top.targets.shape == (3, 2)
    assert top.targets.tolist() == r.output.topk(2, dim=1).indices.tolist()
    second = explainer(x, targets=top.targets[:, 1].tolist())
    torch.testing.assert_close(second.raw[:, 0], top.raw[:, 1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", CLASS_METHODS)
def test_callable_targets_or_a_clear_refusal(name, model, x):
    from eigencam.errors import TargetError

    def score(out):
        return out[:, 2] - out[:, 0]

    explainer = make(name, model)
    if get_method(name).callable_targets:
        r = explainer(x, targets=score)
        assert r.targets is None and r.maps.shape == (3, 1, 32, 32)
    else:
        with pytest.raises(TargetError, match="callable"):
            explainer(x, targets=score)


@pytest.mark.parametrize("name", CLASS_METHODS)
def test_different_classes_give_different_maps(name, model, x):
    explainer = make(name, model)
    a = explainer(x, targets=0).raw
    b = explainer(x, targets=3).raw
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("name", AGNOSTIC)
def test_class_agnostic_methods_refuse_targets(name, model, x):
    with pytest.raises(TypeError, match="class-agnostic"):
        make(name, model)(x, targets=[1, 2, 3])


@pytest.mark.parametrize("name", METHODS)
def test_constructor_has_no_side_effects(name):
    model = TinyCNN(channels=4)
    make(name, model)
    assert hook_count(model) == 0


@pytest.mark.parametrize("name", METHODS)
def test_repeated_calls_are_deterministic(name, model, x):
    explainer = make(name, model)
    torch.testing.assert_close(explainer(x).raw, explainer(x).raw)


@pytest.mark.parametrize("name", METHODS)
def test_bad_inputs_are_typed_errors(name, model):
    with pytest.raises(TypeError, match="floating"):
        make(name, model)(torch.ones(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="unsqueeze"):
        make(name, model)(torch.randn(3, 8, 8))


@pytest.mark.parametrize("name", CLASS_METHODS)
def test_bad_class_index_is_a_target_error(name, model, x):
    from eigencam.errors import TargetError

    with pytest.raises(TargetError, match=r"\[0, 4\]"):
        make(name, model)(x, targets=9)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", METHODS)
def test_cuda_results_stay_on_the_device_and_match_cpu(name, x):
    torch.backends.cudnn.allow_tf32 = False
    model = TinyCNN(channels=4).eval()
    cpu = make(name, model)(x)
    gpu = make(name, model.cuda())(x.cuda())
    assert gpu.maps.device.type == gpu.raw.device.type == "cuda"
    torch.testing.assert_close(gpu.raw.cpu(), cpu.raw, rtol=1e-3, atol=1e-4)
