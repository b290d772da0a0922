"""Object detectors: torchvision's Faster R-CNN, RetinaNet, FCOS, SSD (and Mask/Keypoint R-CNN).

A detector is explained like any model (the backbone's multi-scale maps,
:class:`eigencam.capture.reshape.FeaturePyramid`, the model's own resize-and-pad undone); its
output is read into :class:`~eigencam.models.outputs.Detections` (:func:`detections_of`). Built
with random weights; the preprocessing is a letterbox to the detector's ``min_size`` square,
padded with its normalisation mean, with mean 0 and std 1 (the detector normalises
internally). Class names: the 91 COCO indices of torchvision's weight metadata.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from eigencam.models.entry import ModelEntry
from eigencam.models.outputs import Detections, torchvision_detections
from eigencam.models.preprocessing import Preprocessing
from eigencam.models.sources.torchvision import lookup, task_entry
from eigencam.models.sources.yolo import yolo_detections

DETECTORS = (
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "retinanet_resnet50_fpn",
    "retinanet_resnet50_fpn_v2",
    "fcos_resnet50_fpn",
    "ssd300_vgg16",
    "ssdlite320_mobilenet_v3_large",
    "maskrcnn_resnet50_fpn",
    "maskrcnn_resnet50_fpn_v2",
    "keypointrcnn_resnet50_fpn",
)


def names() -> tuple[str, ...]:
    """The detectors by name."""
    return DETECTORS


def detections_of(output: Any) -> list[Detections]:
    """Detections from a torchvision or Ultralytics YOLO output (one per image).

    YOLO outputs are suppressed with Ultralytics' NMS at its prediction defaults (confidence
    0.25, IoU 0.7); use :func:`eigencam.models.sources.yolo.yolo_detections` to change them.
    """
    if isinstance(output, (list, tuple)) and output and isinstance(output[0], dict):
        return torchvision_detections(output)
    return yolo_detections(output)


def detector_preprocessing(model: nn.Module) -> Preprocessing:
    """Letterbox to the detector's ``min_size`` square, padded with its mean; mean 0, std 1."""
    transform = model.transform
    fixed = getattr(transform, "fixed_size", None)
    if fixed:
        size = (int(fixed[0]), int(fixed[1]))
    else:
        side = int(transform.min_size[-1])
        size = (side, side)
    mean = tuple(float(m) for m in transform.image_mean)
    return Preprocessing(size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), resize="letterbox", fill=mean)


def detector_entry(name: str) -> ModelEntry:
    """The registry entry of a torchvision detector (random weights, COCO names)."""
    return task_entry(
        name,
        "detection",
        detections=torchvision_detections,
        configure=lambda model: {"preprocessing": detector_preprocessing(model)},
    )


def entry(name: str) -> ModelEntry | None:
    """The entry of a detector name (``torchvision:`` prefix allowed), or None."""
    return lookup(name, DETECTORS, detector_entry)
