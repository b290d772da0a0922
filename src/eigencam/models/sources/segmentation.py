"""Semantic segmentation: torchvision's DeepLabV3, FCN and LR-ASPP.

Eigen-CAM explains the backbone (the family default is the backbone layer that feeds the
segmentation head as ``out``, ``backbone.layer4`` for the ResNet variants): the head turns those
features into per-pixel class logits, and the first principal component of the features shows
the regions the whole head works from. Class methods (Grad-CAM...) explain one class of the
segmentation through :class:`eigencam.methods.segmentation_target.SegmentationTarget`.

They are built with ``weights=None, weights_backbone=None`` (random weights); the class names
are the 21 PASCAL VOC categories of torchvision's weight metadata.
"""

from __future__ import annotations

from eigencam.models.entry import ModelEntry
from eigencam.models.preprocessing import Preprocessing
from eigencam.models.sources.torchvision import build_torchvision, categories, lookup

SEGMENTERS = (
    "deeplabv3_resnet50",
    "deeplabv3_resnet101",
    "deeplabv3_mobilenet_v3_large",
    "fcn_resnet50",
    "fcn_resnet101",
    "lraspp_mobilenet_v3_large",
)


def names() -> tuple[str, ...]:
    """The segmenters by name."""
    return SEGMENTERS


def segmenter_entry(name: str) -> ModelEntry:
    """The registry entry of a torchvision segmenter (random weights, VOC names)."""
    return ModelEntry(
        name=name,
        description=f"torchvision segmenter {name} (random weights unless --weights)",
        build=lambda **options: build_torchvision(name, **{"weights_backbone": None, **options}),
        preprocessing=Preprocessing((520, 520)),
        labels=lambda: categories(name),
        task="segmentation",
    )


def entry(name: str) -> ModelEntry | None:
    """The entry of a segmenter name (``torchvision:`` prefix allowed), or None."""
    return lookup(name, SEGMENTERS, segmenter_entry)
