"""COCO instances JSON (``bbox`` = ``[x, y, w, h]``; crowd regions are ignored)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from eigencam.errors import AnnotationError
from eigencam.evaluation.datasets import base


def _instances(folder: Path) -> list[Path]:
    return sorted(folder.glob("instances_*.json")) + sorted(
        folder.glob("annotations/instances_*.json")
    )


def detect(folder: Path) -> bool:
    return bool(_instances(folder))


def read_coco(
    path: str | Path,
    *,
    images: str | Path | None = None,
    class_map: Mapping[str, int] | None = None,
    skip_bad: bool = False,
) -> base.Dataset:
    """A COCO instances JSON (``images``, ``annotations``, ``categories``).

    Args:
        path: the JSON file, or a folder holding exactly one ``instances_*.json`` (searched in
            ``annotations/`` too).
        images: the image folder (default: ``<root>/<split>`` for ``instances_<split>.json``, else
            ``images/``, else the JSON's folder).
        class_map: {category name: model class index}; without it the class is unknown.
        skip_bad: record and leave out malformed entries instead of raising.
    """
    path = Path(path)
    found = [path] if path.is_file() else _instances(path)
    if len(found) != 1:
        raise AnnotationError(
            path, f"expected one instances_*.json, found {len(found)}; pass the JSON file itself"
        )
    ann = found[0]
    root = ann.parent.parent if ann.parent.name == "annotations" else ann.parent
    data = base.read_json(ann)
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise AnnotationError(ann, "a COCO file needs the lists images, annotations, categories")
    if images is not None:
        img_dir = Path(images)
    else:
        split = ann.stem.split("_", 1)[-1]
        candidates = (root / split, root / "images", ann.parent)
        img_dir = next((d for d in candidates if d.is_dir()), ann.parent)
    out = base.Collector(skip_bad)
    cats = {
        c["id"]: str(c["name"])
        for c in data["categories"]
        if isinstance(c, dict) and {"id", "name"} <= c.keys()
    }
    info = {}
    for i, im in enumerate(data["images"]):
        with out.entry(ann):
            if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
                raise AnnotationError(f"images[{i}]", "needs 'id' and 'file_name'")
            info[im["id"]] = (
                im["file_name"],
                base.image_size(im.get("width"), im.get("height"), "size"),
            )
    per_image: dict[Any, list[tuple[str, np.ndarray]]] = {}
    for i, a in enumerate(data["annotations"]):
        where = f"annotations[{i}]"
        with out.entry(ann):
            if not isinstance(a, dict) or "image_id" not in a or "bbox" not in a:
                raise AnnotationError(where, "needs 'image_id' and 'bbox'")
            if a.get("iscrowd", 0):
                continue
            if a["image_id"] not in info:
                raise AnnotationError(where, f"image_id {a['image_id']!r} is not in images")
            box = base.xywh_box(a["bbox"], info[a["image_id"]][1], where)
            name = cats.get(a.get("category_id"))
            if name is None:
                raise AnnotationError(where, f"category_id {a.get('category_id')!r} is unknown")
            per_image.setdefault(a["image_id"], []).append((name, box))
    lookup = base.class_lookup(class_map)
    samples = []
    for image_id, objects in per_image.items():
        file_name, size = info[image_id]
        label, name, boxes = base.choose_class(objects, lookup)
        with out.entry(ann):
            image = base.require_file(img_dir / file_name, f"image id {image_id}")
            samples.append(
                base.Sample(base.key_of(image, root), image, boxes, label, size, str(ann), name)
            )
    return out.dataset(root, "coco", samples)
