"""Semantic segmentation: torchvision's DeepLabV3, FCN and LR-ASPP, built with random weights.

Eigen-CAM explains the backbone layer that feeds the segmentation head (``backbone.layer4`` for
the ResNet variants): its first principal component shows the regions the whole head works
from. Class methods explain one class through
:class:`eigencam.methods.segmentation_target.SegmentationTarget`. Class names: the 21 PASCAL
VOC categories of torchvision's weight metadata.
"""

from __future__ import annotations

from eigencam.models.entry import ModelEntry
from eigencam.models.preprocessing import Preprocessing
from eigencam.models.sources.torchvision import lookup, task_entry

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
    return task_entry(name, "segmentation", preprocessing=Preprocessing((520, 520)))


def entry(name: str) -> ModelEntry | None:
    """The entry of a segmenter name (``torchvision:`` prefix allowed), or None."""
    return lookup(name, SEGMENTERS, segmenter_entry)
