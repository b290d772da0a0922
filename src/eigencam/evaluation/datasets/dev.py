"""The ``annotations.json`` of eigencam's ILSVRC dev set (``imagenet-val-dev``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eigencam.errors import AnnotationError
from eigencam.evaluation.datasets import base


def detect(folder: Path) -> bool:
    return (folder / "annotations.json").is_file()


def read_dev(path: str | Path, *, skip_bad: bool = False) -> base.Dataset:
    """The ``annotations.json`` format of ``imagenet-val-dev`` (folder or the JSON file).

    Each entry needs ``file`` and ``boxes`` (``[[x0, y0, x1, y1], ...]`` in pixels of the image
    file); ``class_id`` (or ``labels[0]``) is the ImageNet-1k index; ``width`` / ``height`` are
    checked against the image when given. Images are looked up in ``images/`` beside the JSON,
    else beside it.
    """
    path = Path(path)
    ann = path / "annotations.json" if path.is_dir() else path
    root = ann.parent
    data = base.read_json(ann)
    entries = data.get("images") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise AnnotationError(ann, 'expected {"images": [...]} with one entry per image')
    image_dir = root / "images" if (root / "images").is_dir() else root
    out = base.Collector(skip_bad)
    samples = []
    for i, entry in enumerate(entries):
        with out.entry(ann):
            samples.append(_sample(entry, f"images[{i}]", image_dir, root, ann))
    return out.dataset(root, "dev", samples)


def _sample(entry: object, where: str, image_dir: Path, root: Path, ann: Path) -> base.Sample:
    if not isinstance(entry, dict) or "file" not in entry or "boxes" not in entry:
        raise AnnotationError(where, "needs 'file' and 'boxes'")
    size = base.image_size(entry.get("width"), entry.get("height"), where)
    boxes = entry["boxes"]
    if not isinstance(boxes, list) or not boxes:
        raise AnnotationError(f"{where} ({entry['file']})", "'boxes' must be a non-empty list")
    arr = np.stack([base.check_box(b, size, f"{where} ({entry['file']})") for b in boxes])
    label = entry.get("class_id")
    if label is None and isinstance(entry.get("labels"), list) and entry["labels"]:
        label = entry["labels"][0]
    if label is not None and (isinstance(label, bool) or not isinstance(label, int)):
        raise AnnotationError(where, f"class_id must be an integer, got {label!r}")
    if label is not None and label < 0:
        raise AnnotationError(where, f"class_id must be >= 0, got {label}")
    file = base.require_file(image_dir / str(entry["file"]), where)
    return base.Sample(
        base.key_of(file, root), file, arr, label, size, str(ann), entry.get("class_name")
    )
