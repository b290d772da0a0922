"""What models return, read: :class:`Detections` per image and segmentation logits.

Detector outputs are a list of ``{"boxes", "labels", "scores"}`` dicts (torchvision) or raw
predictions to suppress (YOLO, :func:`eigencam.models.sources.yolo.yolo_detections`), read
into :class:`Detections` in input pixels, for drawing and for ``results.json``. Segmenters
return (B, classes, H, W) logits, or a dict holding them under ``out``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from eigencam.errors import ShapeError, TargetError


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
        named = list(names or [])
        return [
            {
                "box": [round(float(v), 1) for v in box],
                "label": int(label),
                "name": named[label] if 0 <= label < len(named) else str(label),
                "score": round(float(score), 4),
            }
            for box, score, label in zip(
                *(t.tolist() for t in (self.boxes, self.scores, self.labels))
            )
        ]


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


def segmentation_logits(output: Any, key: str = "out") -> Tensor:
    """The (B, classes, H, W) logits of a segmenter output (a dict with ``out``, or a tensor)."""
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
    except TargetError:
        return None
    predicted = logits.detach().argmax(dim=1).flatten(1)  # (B, H*W)
    classes = logits.shape[1]
    every_class = torch.arange(classes, device=predicted.device)[None, None, :]
    counts = (predicted[:, :, None] == every_class).sum(dim=1)  # (B, classes)
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
