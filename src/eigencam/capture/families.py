"""Model families whose best target layer is not "the last spatial feature map".

For plain CNN classifiers the automatic rule of :mod:`eigencam.capture.layers` (the last 4-D
map before global pooling) is the right layer. Other families need to be recognised:

======================  ===========================================  ========================
family                  default layer                                 reshape
======================  ===========================================  ========================
torchvision ViT         ``encoder.layers.encoder_layer_{L-1}.ln_1``   tokens, class token
                        (the last block's normalised input)           dropped
torchvision Swin        ``norm`` (final LayerNorm, channels-last)     channels-last
timm ViT / DeiT / ...   ``feature_info[-1]`` + ``.norm1``             tokens, prefix tokens
                        (``blocks.{L-1}.norm1``)                      (class, distillation,
                                                                      registers) dropped
timm NHWC models        ``feature_info[-1]`` (``layers.3``)           channels-last
(Swin...)
torchvision detectors   ``backbone`` (FPN / SSD feature maps)         :class:`FeaturePyramid`
(Faster/Mask R-CNN,
RetinaNet, FCOS, SSD)
Ultralytics YOLO        the neck's middle output feeding the head     none
                        (``model.18`` for YOLOv8, ``model.19`` v11)
torchvision segmenters  the backbone's ``out`` layer (``backbone.     none
(DeepLabV3, FCN,        layer4``; ``high`` for LR-ASPP)
LR-ASPP)
======================  ===========================================  ========================

Why: a ViT's patch tokens after the last block only reach the class token through the final
norm, so the peers take the last block's first norm, whose tokens the last attention reads; a
detector's evidence lives in its backbone/neck maps, not in box heads (the generic rule would
pick a head convolution or YOLO's DFL); a segmenter's head outputs logits. A layer of the family
given explicitly gets the same reshape (``target_layer="encoder.layers.encoder_layer_5"``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from eigencam.capture.hooks import submodule
from eigencam.capture.reshape import FeaturePyramid, tokens_to_grid
from eigencam.capture.tree import first_tensor
from eigencam.errors import ShapeError

Transform = Callable[[Any], Tensor]


@dataclass(frozen=True)
class Family:
    """What eigencam knows about a model family.

    Attributes:
        name: shown in ``eigencam layers`` and the docs.
        layer, transform: default target layer (dotted name) and its reshape transform.
        proposals: the layers ``eigencam layers`` proposes (a detector's backbone and neck
            levels, a ViT's blocks...); empty: every usable layer.
        transform_for: the reshape transform for a layer (name, module) given explicitly
            without a ``reshape_transform``.
        input_multiple: input height and width must be multiples of this (YOLO), or None.
    """

    name: str
    layer: str
    transform: Transform | None = None
    proposals: tuple[str, ...] = ()
    transform_for: Callable[[str, nn.Module], Transform | None] | None = field(
        default=None, repr=False
    )
    input_multiple: int | None = None

    def check_input(self, inputs: Tensor) -> None:
        """Raise a ShapeError when the input size does not suit the family."""
        m = self.input_multiple
        if m and (inputs.shape[-2] % m or inputs.shape[-1] % m):
            raise ShapeError(
                f"inputs of this {self.name} model",
                f"(B, 3, H, W) with H and W multiples of {m}",
                tuple(inputs.shape),
                "Letterbox the images to e.g. 640 x 640 (the model's preprocessing does).",
            )

    def proposes(self, name: str) -> bool:
        """True when ``name`` is one of the proposed layers (or nothing is singled out)."""
        return not self.proposals or name in self.proposals


def _from(model: nn.Module, package: str) -> bool:
    return type(model).__module__.startswith(package)


def _under(*prefixes: str) -> Callable[[str], bool]:
    return lambda name: any(name == p or name.startswith(p + ".") for p in prefixes)


def _children(model: nn.Module, path: str) -> list[str]:
    """Dotted names of the children of the submodule at ``path`` (none if it does not exist)."""
    try:
        module = model.get_submodule(path)
    except AttributeError:
        return []
    return [f"{path}.{name}" for name, _ in module.named_children()]


def _torchvision_vit(model: nn.Module) -> Family | None:
    layers = getattr(getattr(model, "encoder", None), "layers", None)
    if not isinstance(layers, nn.Module) or not len(layers):
        return None
    last = list(layers.named_children())[-1][0]
    tokens = tokens_to_grid(num_prefix_tokens=1)
    in_encoder = _under("encoder")
    blocks = _children(model, "encoder.layers")
    return Family(
        name="torchvision ViT",
        layer=f"encoder.layers.{last}.ln_1",
        transform=tokens,
        proposals=(*blocks, *(f"{b}.ln_1" for b in blocks), "encoder.ln"),
        transform_for=lambda name, module: tokens if in_encoder(name) else None,
    )


def _channels_last_unless_conv(name: str, module: nn.Module) -> Transform | None:
    return None if isinstance(module, nn.Conv2d) else tokens_to_grid(channels_last=True)


def _torchvision_swin(model: nn.Module) -> Family:
    nhwc = _under("features", "norm")
    return Family(
        name="torchvision Swin",
        layer="norm",
        transform=tokens_to_grid(channels_last=True),
        proposals=(*_children(model, "features"), "norm"),
        transform_for=lambda name, module: (
            _channels_last_unless_conv(name, module) if nhwc(name) else None
        ),
    )


def declared_feature_name(model: nn.Module) -> str | None:
    """The last feature layer a model declares (timm's ``feature_info``), if it is a submodule."""
    info = getattr(model, "feature_info", None)
    try:
        last = info[-1]
        name = last["module"] if isinstance(last, dict) else getattr(last, "module", None)
    except (IndexError, KeyError, TypeError):
        return None
    return name if isinstance(name, str) and submodule(model, name) is not None else None


def _timm(model: nn.Module) -> Family | None:
    last = declared_feature_name(model)
    if last is None:
        return None
    if getattr(model, "output_fmt", "NCHW") == "NHWC":
        return Family(
            name="timm channels-last",
            layer=last,
            transform=tokens_to_grid(channels_last=True),
            transform_for=_channels_last_unless_conv,
        )
    prefix = getattr(model, "num_prefix_tokens", None)
    if isinstance(prefix, int) and isinstance(getattr(model, "blocks", None), nn.Module):
        patch = getattr(model, "patch_embed", None)
        grid = getattr(patch, "grid_size", None)
        dynamic = bool(getattr(patch, "dynamic_img_size", False))
        tokens = tokens_to_grid(
            num_prefix_tokens=prefix,
            grid=tuple(int(g) for g in grid) if grid is not None and not dynamic else None,
        )
        block = submodule(model, last)
        layer = f"{last}.norm1" if isinstance(getattr(block, "norm1", None), nn.Module) else last
        in_blocks = _under("blocks", "norm")
        blocks = _children(model, "blocks")
        return Family(
            name="timm ViT",
            layer=layer,
            transform=tokens,
            proposals=(*blocks, *(f"{b}.norm1" for b in blocks), "norm"),
            transform_for=lambda name, module: tokens if in_blocks(name) else None,
        )
    return None


def _torchvision_detector(model: nn.Module) -> Family:
    pyramid = FeaturePyramid()
    body = getattr(model.backbone, "body", None)
    stages = getattr(body, "return_layers", None)
    levels = [
        "backbone",
        *_children(model, "backbone"),
        *(f"backbone.body.{k}" for k in (stages or {})),
        *_children(model, "backbone.fpn.layer_blocks"),
        *_children(model, "backbone.fpn.extra_blocks"),
        *_children(model, "backbone.extra"),
    ]
    return Family(
        name="torchvision detector",
        layer="backbone",
        transform=pyramid,
        proposals=tuple(levels),
        transform_for=lambda name, module: pyramid,
    )


def _ultralytics(model: nn.Module) -> Family | None:
    layers = getattr(model, "model", None)
    if not isinstance(layers, nn.Sequential) or not len(layers):
        return None
    sources = getattr(layers[-1], "f", None)
    if not isinstance(sources, (list, tuple)) or not sources:
        return None  # classification heads take one input: the generic rule applies
    middle = int(sources[len(sources) // 2])
    stride = getattr(model, "stride", None)
    multiple = int(stride.max()) if isinstance(stride, Tensor) and stride.numel() else 32
    return Family(
        name="Ultralytics YOLO",
        layer=f"model.{middle}",
        proposals=tuple(f"model.{i}" for i in range(len(layers) - 1)),
        input_multiple=multiple,
    )


def _torchvision_segmenter(model: nn.Module) -> Family | None:
    returns = getattr(getattr(model, "backbone", None), "return_layers", None)
    if not isinstance(returns, dict):
        return None
    by_role = {v: k for k, v in returns.items()}
    name = by_role.get("out") or by_role.get("high")
    if name is None:
        return None
    return Family(
        name="torchvision segmenter",
        layer=f"backbone.{name}",
        proposals=tuple(_children(model, "backbone")),
    )


#: The transform for token output (B, N, C) at a layer of a channels-last family.
FLAT_TOKENS = tokens_to_grid(num_prefix_tokens=0)


def fit_to_output(transform: Transform | None, output: Any) -> Transform | None:
    """A family's transform, fitted to what the layer returned: the token transform
    :data:`FLAT_TOKENS` for token output (B, N, C) where the family applies a channels-last one
    (B, h, w, C) (the ``norm2`` and MLP of a timm Swin block run on flattened tokens).

    Only for transforms a family chose; one the caller passed is used as given.
    """
    if isinstance(transform, tokens_to_grid) and transform.channels_last:
        t = first_tensor(output)
        if isinstance(t, Tensor) and t.ndim == 3:
            return FLAT_TOKENS
    return transform


def family_of(model: nn.Module) -> Family | None:
    """The :class:`Family` of ``model`` (the module eigencam runs), or None for generic models."""
    cls = type(model).__name__
    transform = getattr(model, "transform", None)
    if _from(model, "torchvision.models.detection") and (
        type(transform).__name__ == "GeneralizedRCNNTransform"
        and isinstance(getattr(model, "backbone", None), nn.Module)
    ):
        return _torchvision_detector(model)
    if _from(model, "torchvision.models.segmentation"):
        return _torchvision_segmenter(model)
    if _from(model, "torchvision.models") and cls == "VisionTransformer":
        return _torchvision_vit(model)
    if _from(model, "torchvision.models") and cls == "SwinTransformer":
        return _torchvision_swin(model)
    if _from(model, "timm."):
        return _timm(model)
    if _from(model, "ultralytics.nn"):
        return _ultralytics(model)
    return None
