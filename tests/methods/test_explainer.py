"""EigenCAM as an explainer: hooks, model state, layer choice, result object, errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torchvision

from eigencam import EigenCAM, eigen_cam, list_layers, tokens_to_grid
from eigencam.errors import (
    EigenCAMError,
    LayerNotFoundError,
    LayerSelectionError,
    NonFiniteActivationError,
    ShapeError,
)
from tiny_models import Boom, ExplodingCNN, SharedActivation, StemHeadShared, TinyCNN, TinyViT


def hook_count(model: torch.nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


def test_result_shapes_and_ranges():
    model = TinyCNN()
    x = torch.randn(3, 3, 20, 24)
    r = EigenCAM(model, n_components=2)(x)
    assert r.maps.shape == (3, 2, 20, 24)
    assert r.raw.shape == (3, 2, 10, 12)
    assert r.maps.dtype == torch.float32
    assert float(r.maps.min()) >= 0 and float(r.maps.max()) <= 1
    assert r.layer == "features"
    assert r.method == "eigencam"
    assert r.explained_variance_ratio.shape == (3, 2)
    assert r.output.shape == (3, 5)
    assert r.params["n_components"] == 2 and r.params["center"] is False
    assert len(r) == 3 and r.numpy().shape == (3, 2, 20, 24)


def test_result_is_immutable():
    r = EigenCAM(TinyCNN())(torch.randn(1, 3, 8, 8))
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.layer = "other"
    with pytest.raises(TypeError):
        r.params["center"] = True
    r.maps.mul_(2)  # outputs are ordinary tensors, usable outside inference mode


def test_raw_maps_equal_the_decomposition_of_the_layer_output():
    model = TinyCNN().eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        acts = model.features(x)
    r = EigenCAM(model, "features", n_components=2, center=True)(x)
    torch.testing.assert_close(r.raw, eigen_cam(acts, 2, center=True).projections)


def test_hooks_removed_and_flags_restored_after_success():
    model = TinyCNN()
    model.train()
    model.features[1].eval()  # a mixed state must come back exactly
    model.fc.weight.requires_grad_(False)
    training = [m.training for m in model.modules()]
    grads = [p.requires_grad for p in model.parameters()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    before = hook_count(model)
    x = torch.randn(2, 3, 16, 16)
    EigenCAM(model)(x)
    EigenCAM(model, "features.2")(x)
    assert hook_count(model) == before == 0
    assert [m.training for m in model.modules()] == training
    assert [p.requires_grad for p in model.parameters()] == grads
    for k, v in model.state_dict().items():  # eval mode: BatchNorm statistics untouched
        assert torch.equal(v, state[k]), k
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("layer", ["auto", "features"])
def test_hooks_removed_and_flags_restored_after_exception(layer):
    model = ExplodingCNN()
    model.train()
    training = [m.training for m in model.modules()]
    with pytest.raises(Boom):
        EigenCAM(model, layer)(torch.randn(2, 3, 8, 8))
    assert hook_count(model) == 0
    assert [m.training for m in model.modules()] == training


def test_eval_mode_is_used_for_the_call():
    model = TinyCNN().train()
    x = torch.randn(4, 3, 16, 16)
    r1 = EigenCAM(model)(x)
    r2 = EigenCAM(model)(x)
    torch.testing.assert_close(r1.maps, r2.maps)  # dropout/BN off: deterministic
    model_eval = TinyCNN()
    model_eval.load_state_dict(model.state_dict())
    torch.testing.assert_close(EigenCAM(model_eval.eval())(x).maps, r1.maps)


def test_input_not_mutated_and_no_grad_recorded():
    model = TinyCNN()
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    before = x.detach().clone()
    r = EigenCAM(model)(x)
    assert torch.equal(x.detach(), before)
    assert x.grad is None and not r.maps.requires_grad


def test_batch_of_one_equals_batch_of_n():
    model = TinyCNN()
    x = torch.randn(5, 3, 16, 16)
    full = EigenCAM(model, n_components=2)(x)
    for i in range(5):
        one = EigenCAM(model, n_components=2)(x[i : i + 1])
        torch.testing.assert_close(one.maps[0], full.maps[i], rtol=1e-4, atol=1e-5)


def test_auto_layer_on_torchvision_models():
    x = torch.randn(1, 3, 64, 64)
    assert EigenCAM(torchvision.models.resnet18().eval())(x).layer == "layer4"
    assert (
        EigenCAM(torchvision.models.vgg11().eval())(x).layer == "features.19"
    )  # last conv + ReLU, before the last max-pool
    assert EigenCAM(torchvision.models.densenet121().eval())(x).layer == "features"


def test_auto_layer_picks_the_right_call_of_a_shared_module():
    model = SharedActivation()
    r = EigenCAM(model)(torch.randn(2, 3, 8, 8))
    assert r.layer == "act#1"
    assert r.raw.shape == (2, 1, 8, 8)
    # the explicit spelling works too, and another call index gives the other map
    assert EigenCAM(model, "act#1")(torch.randn(1, 3, 8, 8)).layer == "act#1"
    assert EigenCAM(model, "act#0")(torch.randn(1, 3, 8, 8)).layer == "act#0"


def test_target_layer_by_module_and_name():
    model = TinyCNN()
    x = torch.randn(1, 3, 16, 16)
    assert EigenCAM(model, model.features[2])(x).layer == "features.2"
    assert EigenCAM(model, "features.2")(x).layer == "features.2"


def test_wrong_layer_name_lists_closest_names():
    model = TinyCNN()
    with pytest.raises(LayerNotFoundError) as info:
        EigenCAM(model, "feature")(torch.randn(1, 3, 8, 8))
    assert "features" in str(info.value) and "eigencam layers" in str(info.value)
    assert isinstance(info.value, KeyError) and isinstance(info.value, EigenCAMError)


def test_layer_errors():
    model = TinyCNN()
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(LayerSelectionError, match="not a submodule"):
        EigenCAM(model, torch.nn.ReLU())(x)
    with pytest.raises(ShapeError, match="fc"):
        EigenCAM(model, "fc")(x)  # 2-D output
    with pytest.raises(LayerSelectionError, match="not called"):
        EigenCAM(model, "dropout#3")(x)
    with pytest.raises(TypeError, match="dotted name"):
        EigenCAM(model, 3)(x)


def test_no_spatial_layer_found():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
    with pytest.raises(LayerSelectionError, match="found no module"):
        EigenCAM(model)(torch.randn(1, 3, 2, 2))


def test_input_errors():
    model = TinyCNN()
    with pytest.raises(ShapeError, match="unsqueeze"):
        EigenCAM(model)(torch.randn(3, 8, 8))
    with pytest.raises(TypeError, match="floating"):
        EigenCAM(model)(torch.ones(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(TypeError, match="torch.Tensor"):
        EigenCAM(model)([[1.0]])
    with pytest.raises(ShapeError, match="B >= 1"):
        EigenCAM(model)(torch.randn(0, 3, 8, 8))
    with pytest.raises(TypeError, match="class-agnostic"):
        EigenCAM(model)(torch.randn(1, 3, 8, 8), targets=[1])
    with pytest.raises(TypeError, match="nn.Module"):
        EigenCAM(lambda x: x)(torch.randn(1, 3, 8, 8))


def test_nan_input_names_the_layer():
    model = TinyCNN()
    x = torch.randn(2, 3, 8, 8)
    x[1, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteActivationError, match="layer 'features'"):
        EigenCAM(model)(x)


def test_constructor_has_no_side_effects():
    model = TinyCNN()
    EigenCAM(model, "does.not.exist")  # validated at call time, not here
    assert hook_count(model) == 0


def test_vit_tokens_with_reshape_transform():
    model = TinyViT()
    x = torch.randn(2, 3, 32, 32)
    r = EigenCAM(model, "block", reshape_transform=tokens_to_grid(num_prefix_tokens=1))(x)
    assert r.raw.shape == (2, 1, 4, 4) and r.maps.shape == (2, 1, 32, 32)
    auto = EigenCAM(model, reshape_transform=tokens_to_grid())(x)
    assert auto.layer == "norm"  # the last token output the transform accepts
    with pytest.raises(ShapeError, match="reshape_transform"):
        EigenCAM(model, "block")(x)


def test_tokens_to_grid_shapes():
    t = torch.arange(2 * 17 * 3, dtype=torch.float32).reshape(2, 17, 3)
    g = tokens_to_grid()(t)  # 17 = 1 + 4*4: class token guessed
    assert g.shape == (2, 3, 4, 4)
    assert torch.equal(g[:, :, 0, 0], t[:, 1, :])
    assert tokens_to_grid()(t[:, 1:]).shape == (2, 3, 4, 4)
    assert tokens_to_grid(num_prefix_tokens=1, grid=(2, 8))(t).shape == (2, 3, 2, 8)
    assert tokens_to_grid(channels_last=True)(torch.rand(2, 5, 6, 3)).shape == (2, 3, 5, 6)
    with pytest.raises(ShapeError, match="num_prefix_tokens"):
        tokens_to_grid(num_prefix_tokens=2)(t)


def test_list_layers_marks_auto_choice():
    infos = list_layers(torchvision.models.resnet18().eval(), torch.zeros(1, 3, 64, 64))
    auto = [i for i in infos if i.auto]
    assert [i.name for i in auto] == ["layer4"]
    assert auto[0].shape == (1, 512, 2, 2)
    assert any(i.name == "layer3" and i.candidate for i in infos)


def test_timm_style_feature_info_is_used():
    model = TinyCNN()
    model.feature_info = [{"module": "features.0", "num_chs": 8, "reduction": 1}]
    assert EigenCAM(model)(torch.randn(1, 3, 8, 8)).layer == "features.0"


def test_all_solvers_give_the_same_maps_end_to_end():
    model = TinyCNN()
    x = torch.randn(3, 3, 16, 16)
    ref = EigenCAM(model, solver="svd", n_components=2)(x).maps
    for solver in ("eigh", "squaring", "subspace", "auto"):
        torch.testing.assert_close(
            EigenCAM(model, solver=solver, n_components=2)(x).maps, ref, rtol=1e-4, atol=1e-4
        )


def test_relu_option_matches_the_pytorch_grad_cam_convention():
    model = TinyCNN()
    x = torch.randn(2, 3, 16, 16)
    r = EigenCAM(model, center=True, relu=True)(x)
    from eigencam.postprocess.maps import normalize, upsample

    # ReLU on the projections at the layer's resolution, then upsample and normalise.
    expected = normalize(upsample(r.raw.clamp_min(0), (16, 16)))
    torch.testing.assert_close(r.maps, expected)
    assert float(r.raw.min()) < 0  # raw keeps the signed projections


def test_check_finite_false_gives_nan_maps_without_raising():
    model = TinyCNN()
    x = torch.randn(3, 3, 8, 8)
    x[1, 0, 0, 0] = float("inf")
    r = EigenCAM(model, check_finite=False)(x)
    assert torch.isnan(r.maps[1]).all() and torch.isnan(r.explained_variance_ratio[1]).all()
    assert torch.isfinite(r.maps[[0, 2]]).all()
    torch.testing.assert_close(r.maps[[0, 2]], EigenCAM(model)(x[[0, 2]]).maps)


def test_shared_module_keeps_only_its_last_call_once_the_count_is_known():
    from eigencam.capture import LayerRef, capture_outputs

    model = StemHeadShared()
    x = torch.randn(2, 3, 8, 8)
    cam = EigenCAM(model)
    first = cam(x)
    assert first.layer == "act"  # the head's call: the last one
    kept = []
    ref = LayerRef("act", model.act)
    with torch.inference_mode(), capture_outputs([ref], lambda r, o: kept.append(o) or o) as s:
        model(x)
    assert len(kept) == 2  # without a known count every call is held until the next one
    kept.clear()
    with (
        torch.inference_mode(),
        capture_outputs([ref], lambda r, o: kept.append(o) or o, expected_calls={"act": 2}) as s,
    ):
        model(x)
    assert len(kept) == 1 and s.calls["act"] == 2  # the stem's output is never held
    again = cam(x)  # uses the count learned by the first call
    torch.testing.assert_close(again.raw, first.raw)
    torch.testing.assert_close(again.raw, EigenCAM(model, "act#1")(x).raw)


@pytest.mark.parametrize("calls", [3, 1])
def test_shared_module_whose_call_count_changes_is_still_captured_at_its_last_call(calls):
    model = StemHeadShared()
    x = torch.randn(2, 3, 8, 8)
    cam = EigenCAM(model)
    cam(x)
    model.head_calls = 2
    cam(x)  # learns 3 calls
    model.head_calls = calls
    before = model.forwards
    got = cam(x)
    # more calls than expected: the later ones are kept; fewer: one more forward pass
    assert model.forwards - before == (1 if calls > 2 else 2)
    want = EigenCAM(model, f"act#{calls}")(x)
    torch.testing.assert_close(got.raw, want.raw)


def test_get_params_reads_the_constructor_and_rebuilds_the_explainer():
    from eigencam.methods import GradCAM, Saliency

    cam = EigenCAM(TinyCNN(), "features", n_components=2, combine="sum", relu=True)
    params = cam.get_params()
    assert list(params)[:4] == ["n_components", "center", "solver", "relu"]
    assert params["combine"] == "sum" and "target_layer" not in params
    clone = EigenCAM(cam.model, cam.target_layer, **params)
    assert clone.get_params() == params
    assert GradCAM(TinyCNN()).get_params() == {"eigen_smooth": False, "relu": True}
    assert Saliency(TinyCNN()).get_params() == {"reduction": "max", "relu": False}


def test_one_spec_grammar_and_build_explainer():
    from eigencam.errors import InvalidParameterError, MethodNotFoundError
    from eigencam.methods import MethodSpec, build_explainer, parse_spec, parse_value

    assert [parse_value(t) for t in ("true", "No", "none", "3", "0.5", "1e+3", "a+2", "x")] == [
        True, False, None, 3, 0.5, 1000.0, ["a", 2], "x",
    ]  # fmt: skip
    spec = parse_spec("eigencam:components=3:combine=energy:eigen-smooth=yes:layer=features")
    assert spec == MethodSpec(
        key="eigencam:components=3:combine=energy:eigen-smooth=yes:layer=features",
        name="eigencam",
        options={
            "n_components": 3,
            "combine": "energy",
            "eigen_smooth": True,
            "target_layer": "features",
        },
    )
    with pytest.raises(InvalidParameterError, match="given twice"):
        parse_spec("eigencam:components=2:n_components=3")
    model = TinyCNN()
    e = build_explainer("eigencam:components=3:combine=energy", model, "auto", center=True)
    assert (e.n_components, e.combine, e.center, e.target_layer) == (3, "energy", True, "auto")
    e = build_explainer("eigencam:center=false:layer=features", model, "other", center=True)
    assert e.center is False and e.target_layer == "features"  # the spec wins
    g = build_explainer("gradcam", model, "features", center=True, eigen_smooth=True)
    assert g.eigen_smooth is True and not hasattr(g, "center")  # defaults it does not take
    assert build_explainer("saliency", model, "features").target_layer == "auto"
    with pytest.raises(InvalidParameterError, match="it accepts target_layer, n_components"):
        build_explainer("eigencam:centre=true", model)
    with pytest.raises(MethodNotFoundError, match="gradcam"):
        build_explainer("gradcma", model)


def test_peer_library_habits_raise_typed_errors():
    """What pytorch-grad-cam and torchcam users type first is refused with an EigenCAMError."""
    from eigencam.methods import GradCAM

    model = TinyCNN().eval()
    x = torch.randn(2, 3, 16, 16)
    listed = GradCAM(model, [model.features])(x)  # pgc's target_layers=[module]: accepted
    torch.testing.assert_close(listed.maps, GradCAM(model, "features")(x).maps)
    with pytest.raises(EigenCAMError, match="dotted name"):
        GradCAM(model, 3)(x)
    with pytest.raises(EigenCAMError, match="torch.Tensor"):  # torchcam: cam(class_idx, scores)
        GradCAM(model, "features")(3, model(x))
    with pytest.raises(EigenCAMError, match="class indices"):  # pytorch-grad-cam targets
        GradCAM(model, "features")(x, targets=[object(), object()])
    with pytest.raises(EigenCAMError, match="class-agnostic"):
        EigenCAM(model)(x, targets=[1, 2])
    with pytest.raises(EigenCAMError, match="ndarray"):  # a numpy image instead of a tensor
        EigenCAM(model)(x.numpy())
