"""PASCAL VOC (``Annotations/*.xml``, ``JPEGImages/``, optional ``ImageSets/Main/<set>.txt``)
and its per-image XML, which ILSVRC uses too."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eigencam.errors import AnnotationError
from eigencam.evaluation.datasets import base
from eigencam.io.images import IMAGE_EXTENSIONS


@dataclass(frozen=True)
class XmlAnnotation:
    """One parsed PASCAL/ILSVRC XML file."""

    filename: str | None
    size: tuple[int, int] | None
    objects: list[tuple[str, np.ndarray, bool]]  # (class name, box, difficult)


def parse_xml(path: str | Path) -> XmlAnnotation:
    """Parse a PASCAL VOC / ILSVRC annotation XML file.

    Raises:
        AnnotationError: missing or unreadable XML, missing ``bndbox`` fields, boxes without
            area.
    """
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(path, "annotation file not found")
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as err:
        raise AnnotationError(path, f"cannot read the XML ({err})") from None
    filename = root.findtext("filename")
    size_el = root.find("size")
    try:
        size = None
        if size_el is not None:
            size = base.image_size(size_el.findtext("width"), size_el.findtext("height"), "size")
        objects = []
        for j, obj in enumerate(root.findall("object")):
            name = (obj.findtext("name") or "").strip()
            bb = obj.find("bndbox")
            if not name or bb is None:
                raise AnnotationError(f"object {j}", "needs <name> and <bndbox>")
            fields = [bb.findtext(k) for k in ("xmin", "ymin", "xmax", "ymax")]
            if any(f is None for f in fields):
                raise AnnotationError(f"object {j}", "<bndbox> needs xmin, ymin, xmax, ymax")
            box = base.check_box(fields, size, f"object {j} ({name})")
            difficult = (obj.findtext("difficult") or "0").strip() == "1"
            objects.append((name, box, difficult))
    except AnnotationError as err:
        raise AnnotationError(path, str(err)) from None
    if not objects:
        raise AnnotationError(path, "no <object> with a bounding box")
    return XmlAnnotation(filename.strip() if filename else None, size, objects)


def image_index(folder: Path) -> dict[str, Path]:
    """Image files below ``folder`` by lower-case stem (and by name)."""
    index: dict[str, Path] = {}
    for f in sorted(folder.rglob("*")):
        if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file():
            index.setdefault(f.stem.lower(), f)
            index.setdefault(f.name.lower(), f)
    return index


def xml_sample(
    path: Path,
    ann: XmlAnnotation,
    images: Mapping[str, Path],
    root: Path,
    index_of: Callable[[str], int | None],
) -> base.Sample:
    """The sample of one XML file: its image (by the XML's filename, else the XML's stem) and
    the boxes of its class (:func:`~.base.choose_class`)."""
    label, name, boxes = base.choose_class([(n, b) for n, b, _ in ann.objects], index_of)
    stem = ann.filename or path.stem
    for candidate in (ann.filename, Path(ann.filename).stem if ann.filename else None, path.stem):
        if candidate and candidate.lower() in images:
            image = images[candidate.lower()]
            return base.Sample(
                base.key_of(image, root), image, boxes, label, ann.size, str(path), name
            )
    raise AnnotationError(path, f"image {stem!r} not found below the image folder")


def detect(folder: Path) -> bool:
    return (folder / "Annotations").is_dir() and (folder / "JPEGImages").is_dir()


def read_voc(
    root: str | Path,
    *,
    class_map: Mapping[str, int] | None = None,
    image_set: str | None = None,
    skip_bad: bool = False,
) -> base.Dataset:
    """PASCAL VOC: ``Annotations/*.xml`` and ``JPEGImages/``.

    Args:
        root: the VOC folder (``VOC2012/``).
        class_map: {class name: model class index}; without it, every object's box counts and the
            class is unknown.
        image_set: a list in ``ImageSets/Main/<image_set>.txt`` (e.g. ``val``); default all XML.
        skip_bad: record and leave out malformed annotations instead of raising.
    """
    root = Path(root)
    ann_dir = root / "Annotations"
    if not ann_dir.is_dir():
        raise AnnotationError(root, "a VOC folder needs Annotations/ (and JPEGImages/)")
    img_dir = root / "JPEGImages" if (root / "JPEGImages").is_dir() else root
    if image_set is not None:
        listing = root / "ImageSets" / "Main" / f"{image_set}.txt"
        if not listing.is_file():
            raise AnnotationError(listing, "image set list not found")
        ids = [ln.split()[0] for ln in listing.read_text().splitlines() if ln.strip()]
        xml_files = [ann_dir / f"{i}.xml" for i in ids]
    else:
        xml_files = sorted(ann_dir.glob("*.xml"))
    index = image_index(img_dir)
    lookup = base.class_lookup(class_map)
    out = base.Collector(skip_bad)
    samples = []
    for f in xml_files:
        with out.entry(f):
            samples.append(xml_sample(f, parse_xml(f), index, root, lookup))
    return out.dataset(root, "voc", samples)
