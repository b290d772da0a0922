"""Readers for localization datasets: images, ground-truth boxes and class labels
(docs/localization.md#data has every layout).

Every reader returns a :class:`Dataset`: :class:`Sample` s (image file, boxes in original image
pixels, the model's class index of the object when known) plus the annotations it skipped. One
module per format behind :data:`READERS`, recognised by ``format="auto"`` in the table's order:
``dev`` (the ``annotations.json`` of eigencam's ILSVRC dev set), ``cub`` (CUB-200-2011),
``voc`` (PASCAL VOC), ``coco`` (a COCO instances JSON), ``ilsvrc`` (validation XML + a synset
file). For VOC and COCO a ``class_map`` ({dataset class name: model class index}) names the
model's class of each object; an image with objects of several classes is labelled with the
class of its largest mapped box and evaluated against the boxes of that class.

Malformed or missing annotations raise :class:`~eigencam.errors.AnnotationError` naming the file
and entry, or, with ``skip_bad=True``, are recorded in ``Dataset.skipped`` and left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from eigencam.errors import AnnotationError, check_choice
from eigencam.evaluation.datasets import coco, cub, dev, ilsvrc, voc
from eigencam.evaluation.datasets.base import (
    Dataset,
    Reader,
    Sample,
    read_class_map,
    read_json,
    stratified,
)
from eigencam.evaluation.datasets.coco import read_coco
from eigencam.evaluation.datasets.cub import read_cub
from eigencam.evaluation.datasets.dev import read_dev
from eigencam.evaluation.datasets.ilsvrc import read_ilsvrc, read_synsets
from eigencam.evaluation.datasets.voc import parse_xml, read_voc

READERS: dict[str, Reader] = {
    "dev": Reader(read_dev, dev.detect, path_option="annotations"),
    "cub": Reader(read_cub, cub.detect, {"split": "image_set"}),
    "voc": Reader(read_voc, voc.detect, {"class_map": "class_map", "image_set": "image_set"}),
    "coco": Reader(
        read_coco, coco.detect, {"images": "images", "class_map": "class_map"}, "annotations"
    ),
    "ilsvrc": Reader(
        read_ilsvrc,
        ilsvrc.detect,
        {"synsets": "synsets", "annotations": "annotations", "images": "images"},
    ),
}
FORMATS = ("auto", *READERS)

__all__ = [
    "FORMATS",
    "READERS",
    "Dataset",
    "Sample",
    "detect_format",
    "open_dataset",
    "parse_xml",
    "read_class_map",
    "read_coco",
    "read_cub",
    "read_dev",
    "read_ilsvrc",
    "read_synsets",
    "read_voc",
    "stratified",
]


def detect_format(path: str | Path) -> str:
    """Guess the dataset format of a folder or file (see :data:`READERS`)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"dataset {path} does not exist")
    if path.is_file():
        if path.suffix.lower() != ".json":
            raise AnnotationError(path, "a dataset file must be a JSON (dev or COCO format)")
        data = read_json(path)
        return "coco" if isinstance(data, dict) and "annotations" in data else "dev"
    for name, reader in READERS.items():
        if reader.detect(path):
            return name
    raise AnnotationError(
        path,
        "cannot tell the dataset format (expected annotations.json, ILSVRC XML + synsets, VOC "
        "Annotations/ + JPEGImages/, a COCO instances JSON or CUB's images.txt); pass --format",
    )


def open_dataset(
    path: str | Path,
    *,
    format: str = "auto",
    skip_bad: bool = False,
    class_map: Mapping[str, int] | None = None,
    synsets: str | Path | None = None,
    annotations: str | Path | None = None,
    images: str | Path | None = None,
    image_set: str | None = None,
) -> Dataset:
    """Read any supported dataset with the reader of its format (see :data:`READERS`); each
    reader takes the options that apply to it and ignores the others."""
    check_choice("format", format, FORMATS)
    reader = READERS[detect_format(path) if format == "auto" else format]
    given = {
        "class_map": class_map,
        "synsets": synsets,
        "annotations": annotations,
        "images": images,
        "image_set": image_set,
    }
    options = {arg: given[o] for arg, o in reader.options.items() if given[o]}
    source = given[reader.path_option] if reader.path_option else None
    return reader.read(source or path, skip_bad=skip_bad, **options)
