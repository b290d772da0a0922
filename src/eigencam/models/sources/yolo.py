"""Ultralytics YOLO (v8 and later: YOLOv8, YOLO11, YOLO26...), built from its yaml, offline.

``load_model("yolov8n.yaml")`` (any Ultralytics model yaml, or a path to your own) builds the
network (``DetectionModel``, ``SegmentationModel``...) with random weights, nothing downloaded.
Load trained weights as a state dict (``--weights``):
``torch.save(YOLO("best.pt").model.state_dict(), "best_state.pt")``, since Ultralytics' ``.pt``
checkpoints are pickles that ``weights_only=True`` refuses. Explaining never calls the ``YOLO``
wrapper (its ``__call__`` fuses layers, its ``train()`` starts a training run) nor
``eval()``/``train()``: the flags are set directly. Preprocessing is Ultralytics': letterbox to
640 x 640 with grey (114) padding, RGB in [0, 1]; input sides are multiples of the largest
stride (32).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from eigencam.errors import MissingDependencyError, ModelNotFoundError, ShapeError
from eigencam.models.entry import ModelEntry
from eigencam.models.outputs import Detections
from eigencam.models.preprocessing import Preprocessing

YOLO_FILL = (114 / 255, 114 / 255, 114 / 255)
_TASK_CLASSES = {
    "detect": "DetectionModel",
    "segment": "SegmentationModel",
    "pose": "PoseModel",
    "obb": "OBBModel",
    "classify": "ClassificationModel",
}


def import_ultralytics() -> Any:
    """Import ``ultralytics.nn.tasks`` with its network checks and events off
    (``YOLO_OFFLINE=1`` unless the caller set it).

    Importing Ultralytics also patches ``PIL.Image.open`` (on an unidentified file it tries to
    pip-install a HEIF plugin) and ``torch.save``; when eigencam is the one importing it, both
    are put back as they were.
    """
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    fresh = "ultralytics" not in sys.modules
    if fresh:
        import torch
        from PIL import Image

        saved = (Image.open, torch.save)
    try:
        import ultralytics.nn.tasks as tasks
    except ImportError as err:
        raise MissingDependencyError("ultralytics", "yolo", "Ultralytics YOLO models") from err
    finally:
        if fresh:
            Image.open, torch.save = saved
    return tasks


def build_yolo(cfg: str, **options: Any) -> nn.Module:
    """An Ultralytics network built from ``cfg`` (a bundled yaml name such as
    ``yolo11s-seg.yaml``, or a path), random weights; ``options`` go to the model class (``nc=``
    number of classes, ``ch=`` channels)."""
    tasks = import_ultralytics()
    try:
        task = tasks.guess_model_task(cfg)
        cls = getattr(tasks, _TASK_CLASSES.get(task, "DetectionModel"))
        options.setdefault("verbose", False)
        return cls(cfg, **options)
    except FileNotFoundError as err:
        raise ModelNotFoundError(cfg, bundled_yamls()) from err


def bundled_yamls() -> list[str]:
    """Model yaml names Ultralytics ships (v8 and later), with their scales: ``yolov8n.yaml``."""
    try:
        root = Path(import_ultralytics().__file__).parent.parent / "cfg" / "models"
    except MissingDependencyError:
        return []
    names = set()
    for sub in ("v8", "11", "12", "26"):
        for path in sorted((root / sub).glob("*.yaml")) if (root / sub).is_dir() else []:
            base, dash, rest = path.stem.partition("-")
            names.add(path.name)
            if base[-1:].isdigit():  # yolov8.yaml is built as yolov8n.yaml ... yolov8x.yaml
                names.update(f"{base}{scale}{dash}{rest}.yaml" for scale in "nsmlx")
    return sorted(names)


def coco80() -> list[str]:
    """The 80 COCO class names of Ultralytics' ``coco.yaml`` (read from the installed package)."""
    import_ultralytics()
    from ultralytics.utils import ROOT, YAML

    names = YAML.load(ROOT / "cfg" / "datasets" / "coco.yaml")["names"]
    return [names[i] for i in range(len(names))]


def yolo_detections(
    output: Any,
    *,
    conf: float = 0.25,
    iou: float = 0.7,
    max_det: int = 300,
    nc: int = 0,
    end2end: bool | None = None,
    image_size: tuple[int, int] | None = None,
) -> list[Detections]:
    """Detections from a YOLO network's eval output, with Ultralytics' NMS (``conf``, ``iou``,
    ``max_det``: its prediction defaults).

    Args:
        output: ``(predictions, extras)`` or the predictions: (B, 4 + nc + extra, anchors) xywh
            boxes and class scores, or (B, max_det, 6 + extra) for end-to-end (NMS-free) heads.
        nc: number of classes, needed when the predictions carry extra channels (masks,
            keypoints); 0: every channel after the box is a class.
        end2end: the head is NMS-free; None guesses from the shape.
        image_size: (H, W) of the input, to clip the boxes to it as Ultralytics' predictor
            does; None leaves them as predicted.

    Returns:
        One :class:`Detections` per image, boxes in input pixels.
    """
    import_ultralytics()
    from ultralytics.utils.nms import non_max_suppression

    pred = output
    for _ in range(3):  # (predictions, extras), ((predictions, protos), extras)...
        if isinstance(pred, (tuple, list)) and pred:
            pred = pred[0]
    if not isinstance(pred, Tensor) or pred.ndim != 3:
        got = tuple(pred.shape) if isinstance(pred, Tensor) else type(output).__name__
        want = "(B, 4 + classes, anchors) predictions"
        raise ShapeError("YOLO output", want, got, "Run the model in eval mode.")
    if end2end is None:
        end2end = pred.shape[-1] == 6 and pred.shape[1] > 6
    kept = non_max_suppression(
        pred.detach().float(), conf, iou, max_det=max_det, nc=nc, end2end=end2end
    )
    out = []
    for k in kept:
        boxes = k[:, :4].float().clone()
        if image_size is not None:
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, image_size[1])
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, image_size[0])
        out.append(Detections(boxes, k[:, 4].float(), k[:, 5].long()))
    return out


def yolo_configure(model: nn.Module) -> dict[str, Any]:
    """Detections reader and labels matching the built network."""
    layers = getattr(model, "model", None)  # the head is the last layer
    head = layers[-1] if isinstance(layers, nn.Sequential) and len(layers) else None
    nc = int(getattr(head, "nc", 0) or 0)
    end2end = bool(getattr(head, "end2end", False))
    overrides: dict[str, Any] = {
        "detections": lambda output: yolo_detections(output, nc=nc, end2end=end2end)
    }
    if type(model).__name__ == "ClassificationModel":
        overrides.update(task="classification", detections=None)
    if nc != 80:
        overrides["labels"] = None
    return overrides


def entry(cfg: str) -> ModelEntry | None:
    """The entry of an Ultralytics model yaml (name or path: ``yolov8n.yaml``,
    ``cfg/my-yolo.yml``); None for other names."""
    if not cfg.lower().endswith((".yaml", ".yml")):
        return None
    return ModelEntry(
        name=cfg,
        description=f"Ultralytics {cfg} built from its yaml (random weights unless --weights)",
        build=lambda **options: build_yolo(cfg, **options),
        preprocessing=Preprocessing(
            (640, 640), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), resize="letterbox", fill=YOLO_FILL
        ),
        labels=coco80,
        task="detection",
        configure=yolo_configure,
    )
