"""The compatibility matrix: Eigen-CAM on every model family eigencam supports.

Each row builds a model (random weights, small inputs: forward only), explains a batch with the
default ``target_layer="auto"`` and checks what a user relies on: the map has the input's shape,
is finite and not constant, the layer is the documented default, the model's ``training`` flags,
``requires_grad`` flags and state dict are exactly as before, its outputs are unchanged, the
explainer's ``output`` is the model's eval output, and no hook remains. The same rows feed the
table in docs/models.md.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import torchvision
from torch import nn

from eigencam import EigenCAM
from eigencam.capture import preserved_state, runner_for
from eigencam.models import RandomWeightsWarning, load_model

SMALL_DETECTOR = {
    "min_size": 96,
    "max_size": 128,
    "rpn_pre_nms_top_n_test": 50,
    "rpn_post_nms_top_n_test": 50,
    "box_detections_per_img": 20,
}


@dataclass(frozen=True)
class Row:
    id: str
    build: Callable[[], nn.Module]
    input: tuple[int, int, int, int]
    layer: str
    slow: bool = False


def tv(name: str, **kw: Any) -> Callable[[], nn.Module]:
    return lambda: torchvision.models.get_model(name, weights=None, **kw)


def registry(name: str, **kw: Any) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RandomWeightsWarning)
            return load_model(name, **kw).model

    return build


ROWS = [
    # the paper's five
    Row("alexnet", tv("alexnet"), (2, 3, 96, 96), "features.11"),
    Row("vgg16", tv("vgg16"), (2, 3, 64, 64), "features.29"),
    Row("resnet101", tv("resnet101"), (2, 3, 64, 64), "layer4"),
    Row(
        "googlenet",
        tv("googlenet", aux_logits=False, init_weights=True),
        (2, 3, 64, 64),
        "inception5b",
    ),
    Row("densenet121", tv("densenet121"), (2, 3, 64, 64), "features"),
    # more torchvision classifiers
    Row("resnet50", tv("resnet50"), (2, 3, 64, 80), "layer4"),
    Row("mobilenet_v3_large", tv("mobilenet_v3_large"), (2, 3, 64, 64), "features"),
    Row("efficientnet_b0", tv("efficientnet_b0"), (2, 3, 64, 64), "features"),
    Row("regnet_y_400mf", tv("regnet_y_400mf"), (2, 3, 64, 64), "trunk_output"),
    Row("convnext_tiny", tv("convnext_tiny"), (2, 3, 64, 64), "features"),
    Row(
        "vit_b_16",
        tv("vit_b_16", image_size=64),
        (2, 3, 64, 64),
        "encoder.layers.encoder_layer_11.ln_1",
    ),
    Row("swin_t", tv("swin_t"), (2, 3, 64, 64), "norm"),
    # the embedded default (real weights)
    Row("efficientnet_lite0", registry("efficientnet_lite0"), (2, 3, 64, 64), "_swish"),
    # timm by name
    Row("timm:resnet18", registry("timm:resnet18"), (2, 3, 64, 64), "layer4"),
    Row("timm:convnext_atto", registry("timm:convnext_atto"), (2, 3, 64, 64), "stages.3"),
    Row(
        "timm:vit_tiny_patch16_224",
        registry("timm:vit_tiny_patch16_224", img_size=64),
        (2, 3, 64, 64),
        "blocks.11.norm1",
    ),
    Row(
        "timm:deit_tiny_distilled_patch16_224",
        registry("timm:deit_tiny_distilled_patch16_224", img_size=64),
        (2, 3, 64, 64),
        "blocks.11.norm1",
    ),
    Row(
        "timm:swin_tiny_patch4_window7_224",
        registry("timm:swin_tiny_patch4_window7_224", img_size=64, window_size=2),
        (2, 3, 64, 64),
        "layers.3",
    ),
    # torchvision detectors (dict/list outputs, internal resize + pad)
    Row(
        "fasterrcnn_resnet50_fpn",
        registry("fasterrcnn_resnet50_fpn", **SMALL_DETECTOR),
        (2, 3, 80, 112),
        "backbone",
    ),
    Row(
        "retinanet_resnet50_fpn",
        registry(
            "retinanet_resnet50_fpn",
            min_size=96,
            max_size=128,
            topk_candidates=50,
            detections_per_img=20,
        ),
        (2, 3, 80, 112),
        "backbone",
    ),
    Row(
        "fcos_resnet50_fpn",
        registry(
            "fcos_resnet50_fpn",
            min_size=96,
            max_size=128,
            topk_candidates=50,
            detections_per_img=20,
        ),
        (2, 3, 80, 112),
        "backbone",
    ),
    Row(
        "ssd300_vgg16",
        registry("ssd300_vgg16", topk_candidates=50, detections_per_img=20),
        (2, 3, 80, 112),
        "backbone",
        slow=True,
    ),
    Row(
        "ssdlite320_mobilenet_v3_large",
        registry("ssdlite320_mobilenet_v3_large", topk_candidates=50, detections_per_img=20),
        (2, 3, 80, 112),
        "backbone",
    ),
    # Ultralytics YOLO, from yaml
    Row("yolov8n.yaml", registry("yolov8n.yaml"), (2, 3, 96, 128), "model.18"),
    Row("yolo11n.yaml", registry("yolo11n.yaml"), (2, 3, 96, 128), "model.19"),
    # torchvision segmenters (Eigen-CAM on the backbone)
    Row("deeplabv3_resnet50", registry("deeplabv3_resnet50"), (2, 3, 64, 64), "backbone.layer4"),
    Row("fcn_resnet50", registry("fcn_resnet50"), (2, 3, 64, 64), "backbone.layer4"),
    Row(
        "lraspp_mobilenet_v3_large",
        registry("lraspp_mobilenet_v3_large"),
        (2, 3, 64, 64),
        "backbone.16",
    ),
]


def hook_count(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


def tensors_of(output: Any) -> list[torch.Tensor]:
    """Every tensor in a nested output, in a fixed order."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        return [t for k in output for t in tensors_of(output[k])]
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in tensors_of(item)]
    return []


def eval_output(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.inference_mode(), preserved_state(model):
        return [t.clone() for t in tensors_of(runner_for(model)(x))]


def mixed_training_flags(model: nn.Module) -> list[bool]:
    """Put the model in a mixed state (not via train()/eval()) and return the flags."""
    for i, m in enumerate(model.modules()):
        m.training = i % 3 != 0
    return [m.training for m in model.modules()]


def params(rows: list[Row]) -> list:
    return [pytest.param(r, id=r.id, marks=[pytest.mark.slow] if r.slow else []) for r in rows]


@pytest.mark.parametrize("row", params(ROWS))
def test_eigencam_on_every_model(row: Row):
    torch.manual_seed(0)
    model = row.build()
    x = torch.rand(*row.input)
    before = eval_output(model, x)
    flags = mixed_training_flags(model)
    grads = [p.requires_grad for p in model.parameters()]
    state = {k: v.clone() for k, v in model.state_dict().items()}

    result = EigenCAM(model)(x)

    assert result.layer == row.layer
    b, _, h, w = row.input
    assert result.maps.shape == (b, 1, h, w)
    assert result.maps.dtype == torch.float32
    assert torch.isfinite(result.maps).all() and torch.isfinite(result.raw).all()
    flat = result.maps.flatten(1)
    assert torch.all(flat.amax(1) == 1) and torch.all(flat.amin(1) == 0), "constant map"
    assert [m.training for m in model.modules()] == flags
    assert [p.requires_grad for p in model.parameters()] == grads
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert hook_count(model) == 0 and hook_count(runner_for(model)) == 0
    after = eval_output(model, x)
    assert len(after) == len(before)
    for a, c in zip(after, before):
        torch.testing.assert_close(a, c, rtol=0, atol=0)
    for a, c in zip(tensors_of(result.output), before):
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-5)
