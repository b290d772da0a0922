"""Semantic segmentation: torchvision's DeepLabV3, FCN and LR-ASPP.

Eigen-CAM explains the backbone (the family default is the backbone layer that feeds the
segmentation head as ``out``, ``backbone.layer4`` for the ResNet variants): the head turns those
features into per-pixel class logits, and the first principal component of the features shows
the regions the whole head works from. Class methods (Grad-CAM...) explain one class of the
segmentation through :class:`eigencam.methods.segmentation_target.SegmentationTarget`.

The registry builds them with ``weights=None, weights_backbone=None`` (random weights); the
class names are the 21 PASCAL VOC categories of torchvision's weight metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

SEGMENTERS = (
    "deeplabv3_resnet50",
    "deeplabv3_resnet101",
    "deeplabv3_mobilenet_v3_large",
    "fcn_resnet50",
    "fcn_resnet101",
    "lraspp_mobilenet_v3_large",
)


def voc_categories(name: str = "deeplabv3_resnet50") -> list[str]:
    """The 21 PASCAL VOC category names of torchvision's segmentation weight metadata."""
    import torchvision.models as tvm

    return list(tvm.get_model_weights(name).DEFAULT.meta["categories"])


def build_segmenter(name: str, **options: Any) -> nn.Module:
    """A torchvision segmenter with random weights (``weights=None, weights_backbone=None``)."""
    import torchvision.models as tvm

    options.setdefault("weights", None)
    options.setdefault("weights_backbone", None)
    return tvm.get_model(name, **options)


def segmentation_logits(output: Any, key: str = "out") -> Tensor:
    """The (B, classes, H, W) logits of a segmenter output (a dict with ``out``, or a tensor)."""
    from eigencam.errors import TargetError

    logits = output.get(key) if isinstance(output, dict) else output
    if not isinstance(logits, Tensor) or logits.ndim != 4:
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(output).__name__
        raise TargetError(
            f"a segmentation target needs (B, classes, H, W) logits (a tensor, or a dict with "
            f"{key!r}); got {got}"
        )
    return logits


def segmentation_summary(
    output: Any, labels: Sequence[str] | None = None, top: int = 5
) -> list[list[dict[str, Any]]] | None:
    """Per image, the predicted classes covering the most pixels: index, label, fraction."""
    try:
        logits = segmentation_logits(output)
    except ValueError:
        return None
    predicted = logits.detach().argmax(dim=1).flatten(1)  # (B, H*W)
    classes = logits.shape[1]
    counts = (predicted[:, :, None] == _arange(classes, predicted)).sum(dim=1)  # (B, classes)
    fractions = counts.float() / predicted.shape[1]
    values, indices = fractions.topk(min(top, classes), dim=1)
    use = labels is not None and len(labels) == classes
    return [
        [
            {"index": int(i), "label": labels[i] if use else str(i), "fraction": round(float(f), 4)}
            for i, f in zip(row_i, row_f)
            if f > 0
        ]
        for row_i, row_f in zip(indices.tolist(), values.tolist())
    ]


def _arange(n: int, like: Tensor) -> Tensor:
    import torch

    return torch.arange(n, device=like.device)[None, None, :]


def segmenter_entry(name: str) -> Any:
    """The registry entry of a torchvision segmenter (random weights, VOC names)."""
    from eigencam.models.preprocessing import Preprocessing
    from eigencam.models.registry import ModelEntry

    return ModelEntry(
        name=name,
        description=f"torchvision segmenter {name} (random weights unless --weights)",
        build=lambda **options: build_segmenter(name, **options),
        preprocessing=Preprocessing((520, 520)),
        labels=lambda: voc_categories(name),
        task="segmentation",
    )
