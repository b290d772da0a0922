"""Object detectors: torchvision's Faster R-CNN, RetinaNet, FCOS, SSD (and Mask/Keypoint R-CNN),
and the :class:`Detections` every detector output is read into.

Eigen-CAM is class-agnostic, so a detector is explained like any model: one forward pass, the
backbone's multi-scale maps (:class:`eigencam.capture.reshape.FeaturePyramid`), the model's own
resize-and-pad undone (:mod:`eigencam.capture.geometry`). What differs is the output: a list of
``{"boxes", "labels", "scores"}`` dicts (torchvision) or raw predictions to suppress (YOLO),
read here into :class:`Detections` in input pixels, for drawing and for ``results.json``.

The registry builds torchvision detectors with ``weights=None, weights_backbone=None`` (random
weights: nothing is downloaded). Their preprocessing is a letterbox to the detector's own
``min_size`` square, padded with its normalisation mean (what its transform pads with), with
mean 0 and std 1: the detector normalises internally. Class names are the COCO categories of
torchvision's weight metadata (91 indices, ``__background__`` and ``N/A`` included).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from eigencam.errors import ShapeError

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


@dataclass(frozen=True)
class Detections:
    """The detections of one image.

    Attributes:
        boxes: (N, 4) float32 (x0, y0, x1, y1) in pixels of the model input (or of the original
            image after :meth:`to_original`).
        scores: (N,) float32 confidences.
        labels: (N,) int64 class indices (the model's label space).
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def above(self, threshold: float, limit: int | None = None) -> Detections:
        """The detections scoring at least ``threshold``, best first, at most ``limit``."""
        keep = (self.scores >= threshold).nonzero().flatten()
        keep = keep[self.scores[keep].argsort(descending=True)]
        if limit is not None:
            keep = keep[:limit]
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep])

    def to_original(self, preprocessing: Any, width: int, height: int) -> Detections:
        """Boxes mapped from input pixels to the original image (see ``Preprocessing``)."""
        return Detections(
            preprocessing.box_to_original(self.boxes, width, height),
            self.scores.detach().float().cpu(),
            self.labels.detach().cpu(),
        )

    def records(self, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """JSON-ready dicts: box (x0, y0, x1, y1, rounded to 0.1 px), label, name, score."""
        use_names = names is not None
        out = []
        for box, score, label in zip(
            self.boxes.tolist(), self.scores.tolist(), self.labels.tolist()
        ):
            name = names[label] if use_names and 0 <= label < len(names) else str(label)
            out.append(
                {
                    "box": [round(float(v), 1) for v in box],
                    "label": int(label),
                    "name": name,
                    "score": round(float(score), 4),
                }
            )
        return out


def torchvision_detections(output: Any) -> list[Detections]:
    """Read torchvision detection output (a list of dicts with boxes, scores, labels)."""
    if not isinstance(output, (list, tuple)) or not all(
        isinstance(o, dict) and {"boxes", "scores", "labels"} <= set(o) for o in output
    ):
        raise ShapeError(
            "detector output",
            "a list of dicts with 'boxes', 'scores' and 'labels' (torchvision detectors)",
            type(output).__name__,
        )
    return [
        Detections(
            o["boxes"].detach().float().reshape(-1, 4),
            o["scores"].detach().float().reshape(-1),
            o["labels"].detach().long().reshape(-1),
        )
        for o in output
    ]


def detections_of(output: Any) -> list[Detections]:
    """Detections from a torchvision or Ultralytics YOLO output (one per image).

    YOLO outputs are suppressed with Ultralytics' NMS at its prediction defaults (confidence
    0.25, IoU 0.7); use :func:`eigencam.models.yolo.yolo_detections` to change them.
    """
    if isinstance(output, (list, tuple)) and output and isinstance(output[0], dict):
        return torchvision_detections(output)
    from eigencam.models.yolo import yolo_detections

    return yolo_detections(output)


def coco_categories(name: str = "fasterrcnn_resnet50_fpn") -> list[str]:
    """The COCO category names of a torchvision detector's weight metadata (no download)."""
    import torchvision.models as tvm

    return list(tvm.get_model_weights(name).DEFAULT.meta["categories"])


def build_detector(name: str, **options: Any) -> nn.Module:
    """A torchvision detector with random weights (``weights=None, weights_backbone=None``)."""
    import torchvision.models as tvm

    options.setdefault("weights", None)
    options.setdefault("weights_backbone", None)
    return tvm.get_model(name, **options)


def detector_preprocessing(model: nn.Module) -> Any:
    """Letterbox to the detector's ``min_size`` square, padded with its mean; mean 0, std 1."""
    from eigencam.models.preprocessing import Preprocessing

    transform = model.transform
    fixed = getattr(transform, "fixed_size", None)
    if fixed:
        size = (int(fixed[0]), int(fixed[1]))
    else:
        side = int(transform.min_size[-1])
        size = (side, side)
    mean = tuple(float(m) for m in transform.image_mean)
    return Preprocessing(size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), resize="letterbox", fill=mean)


def detector_entry(name: str) -> Any:
    """The registry entry of a torchvision detector (random weights, COCO names)."""
    from eigencam.models.registry import ModelEntry

    return ModelEntry(
        name=name,
        description=f"torchvision detector {name} (random weights unless --weights)",
        build=lambda **options: build_detector(name, **options),
        labels=lambda: coco_categories(name),
        task="detection",
        detections=torchvision_detections,
        configure=lambda model: {"preprocessing": detector_preprocessing(model)},
    )
