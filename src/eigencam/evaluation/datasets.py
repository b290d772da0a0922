"""Readers for localization datasets: images, ground-truth boxes and class labels.

Every reader returns a :class:`Dataset`: a list of :class:`Sample` (image file, boxes in original
image pixels, the model's class index of the object when known) plus the annotations it skipped.
Formats (``format="auto"`` recognises them from the folder):

- ``dev``: the ``annotations.json`` of eigencam's ILSVRC dev set (``{"images": [{"file",
  "boxes", "class_id", "width", "height"}, ...]}``, boxes ``[x0, y0, x1, y1]`` in pixels of the
  stored image, images in ``images/``);
- ``ilsvrc``: ILSVRC validation layout, one PASCAL-style XML per image (``ILSVRC2012_bbox_val_v3``
  or Kaggle's ``ILSVRC/Annotations/CLS-LOC/val``), JPEGs anywhere below the root (flat or in
  class folders), and a synset file mapping WordNet ids to class indices;
- ``voc``: PASCAL VOC (``Annotations/*.xml``, ``JPEGImages/``, optional
  ``ImageSets/Main/<set>.txt``);
- ``coco``: a COCO instances JSON (``bbox`` = ``[x, y, w, h]``; crowd regions are ignored);
- ``cub``: CUB-200-2011 (``images.txt``, ``bounding_boxes.txt``, ``image_class_labels.txt``,
  ``train_test_split.txt``; the test split by default).

Class indices: ILSVRC WordNet ids are numbered in sorted order (torchvision's and timm's
ImageNet-1k order) unless the synset file is a JSON ``{"index": [wnid, name]}`` that gives them.
For VOC and COCO a ``class_map`` ({dataset class name: model class index}) names the model's
class of each object; without it the class is unknown and only class-agnostic measures apply.
An image with objects of several classes is labelled with the class of its largest mapped box
and evaluated against the boxes of that class.

Malformed or missing annotations raise :class:`~eigencam.errors.AnnotationError` naming the file
and entry, or, with ``skip_bad=True``, are recorded in ``Dataset.skipped`` and left out.
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from eigencam.errors import AnnotationError
from eigencam.io.images import IMAGE_EXTENSIONS

FORMATS = ("auto", "dev", "ilsvrc", "voc", "coco", "cub")
SYNSET_FILES = (
    "LOC_synset_mapping.txt",
    "synsets.txt",
    "synset_words.txt",
    "imagenet_class_index.json",
    "map_clsloc.txt",
)
_WNID = re.compile(r"^n\d{8}$")


@dataclass(frozen=True)
class Sample:
    """One image to localize.

    Attributes:
        key: stable identifier (path relative to the dataset root, ``/``-separated).
        path: the image file.
        boxes: (G, 4) float64 ground-truth boxes ``[x0, y0, x1, y1]`` in original image pixels.
        label: the model's class index of the object, or None when unknown.
        size: (width, height) the annotation was made for, checked against the image; or None.
        source: the annotation file (named in error messages).
        class_name: the dataset's class name of the object, if any.
    """

    key: str
    path: Path
    boxes: np.ndarray = field(repr=False)
    label: int | None
    size: tuple[int, int] | None
    source: str
    class_name: str | None = None


@dataclass
class Dataset:
    """Samples plus what was skipped while reading them.

    Attributes:
        root: the dataset folder (or annotation file) given.
        format: the format read.
        samples: the images to evaluate, sorted by file name (then key).
        skipped: (annotation source, reason) for each entry left out with ``skip_bad``.
    """

    root: Path
    format: str
    samples: list[Sample]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    def part(self, index: int, count: int) -> Dataset:
        """Part ``index`` (1-based) of ``count`` interleaved parts: samples i with i % count ==
        index - 1 in file-name order (a deterministic split that keeps class proportions when
        names are not ordered by class, as ILSVRC's are not)."""
        if count < 1 or not 1 <= index <= count:
            raise ValueError(f"part must be I/N with 1 <= I <= N, got {index}/{count}")
        return replace(self, samples=self.samples[index - 1 :: count])

    def head(self, limit: int | None) -> Dataset:
        """The first ``limit`` samples (all when None)."""
        if limit is None:
            return self
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        return replace(self, samples=self.samples[:limit])


class _Collector:
    """Raises or records annotation errors (``skip_bad``)."""

    def __init__(self, skip_bad: bool) -> None:
        self.skip_bad = skip_bad
        self.skipped: list[tuple[str, str]] = []

    def bad(self, source: object, cause: str) -> None:
        if not self.skip_bad:
            raise AnnotationError(
                source, cause + " (fix the annotation, or pass --skip-bad to leave it out)"
            )
        self.skipped.append((str(source), cause))


# -- boxes ----------------------------------------------------------------------------------
def check_box(box: Any, size: tuple[int, int] | None, where: str) -> np.ndarray:
    """Validate one ``[x0, y0, x1, y1]`` box; clip it to the image when the size is known.

    Raises:
        AnnotationError-compatible ``ValueError`` text via the caller (``where`` names it).
    """
    try:
        values = [float(v) for v in box]
    except (TypeError, ValueError):
        raise ValueError(f"{where}: box must be 4 numbers [x0, y0, x1, y1], got {box!r}") from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{where}: box must be 4 finite numbers [x0, y0, x1, y1], got {box!r}")
    x0, y0, x1, y1 = values
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"{where}: box {values} has no area (need x1 > x0 and y1 > y0)")
    if size is not None:
        w, h = size
        cx0, cy0, cx1, cy1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(w)), min(y1, float(h))
        if cx1 <= cx0 or cy1 <= cy0:
            raise ValueError(f"{where}: box {values} lies outside the {w} x {h} image")
        x0, y0, x1, y1 = cx0, cy0, cx1, cy1
    return np.array([x0, y0, x1, y1], dtype=np.float64)


def _size(width: Any, height: Any, where: str) -> tuple[int, int] | None:
    if width is None and height is None:
        return None
    try:
        w, h = int(float(width)), int(float(height))
    except (TypeError, ValueError):
        raise ValueError(
            f"{where}: image size must be two integers, got {width!r} x {height!r}"
        ) from None
    if w < 1 or h < 1:
        raise ValueError(f"{where}: image size must be positive, got {w} x {h}")
    return (w, h)


def _key(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


# -- eigencam dev set (annotations.json) ----------------------------------------------------
def read_dev(path: str | Path, *, skip_bad: bool = False) -> Dataset:
    """The ``annotations.json`` format of ``imagenet-val-dev`` (folder or the JSON file).

    Each entry needs ``file`` and ``boxes`` (``[[x0, y0, x1, y1], ...]`` in pixels of the image
    file); ``class_id`` (or ``labels[0]``) is the ImageNet-1k index; ``width`` / ``height`` are
    checked against the image when given. Images are looked up in ``images/`` beside the JSON,
    else beside it.
    """
    path = Path(path)
    ann = path / "annotations.json" if path.is_dir() else path
    root = ann.parent
    data = _read_json(ann)
    entries = data.get("images") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise AnnotationError(ann, 'expected {"images": [...]} with one entry per image')
    image_dir = root / "images" if (root / "images").is_dir() else root
    out = _Collector(skip_bad)
    samples = []
    for i, entry in enumerate(entries):
        where = f"images[{i}]"
        try:
            if not isinstance(entry, dict) or "file" not in entry or "boxes" not in entry:
                raise ValueError(f"{where}: needs 'file' and 'boxes'")
            size = _size(entry.get("width"), entry.get("height"), where)
            boxes = entry["boxes"]
            if not isinstance(boxes, list) or not boxes:
                raise ValueError(f"{where} ({entry['file']}): 'boxes' must be a non-empty list")
            arr = np.stack([check_box(b, size, f"{where} ({entry['file']})") for b in boxes])
            label = entry.get("class_id")
            if label is None and isinstance(entry.get("labels"), list) and entry["labels"]:
                label = entry["labels"][0]
            if label is not None and (isinstance(label, bool) or not isinstance(label, int)):
                raise ValueError(f"{where}: class_id must be an integer, got {label!r}")
            if label is not None and label < 0:
                raise ValueError(f"{where}: class_id must be >= 0, got {label}")
            file = image_dir / str(entry["file"])
            _require_file(file, where)
            samples.append(
                Sample(
                    key=_key(file, root),
                    path=file,
                    boxes=arr,
                    label=label,
                    size=size,
                    source=str(ann),
                    class_name=entry.get("class_name"),
                )
            )
        except ValueError as err:
            out.bad(ann, str(err))
    return _dataset(root, "dev", samples, out)


# -- PASCAL-style XML (VOC and ILSVRC) ------------------------------------------------------
@dataclass(frozen=True)
class XmlAnnotation:
    """One parsed PASCAL/ILSVRC XML file."""

    filename: str | None
    size: tuple[int, int] | None
    objects: list[tuple[str, np.ndarray, bool]]  # (class name, box, difficult)


def parse_xml(path: str | Path) -> XmlAnnotation:
    """Parse a PASCAL VOC / ILSVRC annotation XML file.

    Raises:
        AnnotationError: unreadable XML, missing ``bndbox`` fields, boxes without area.
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as err:
        raise AnnotationError(path, f"cannot read the XML ({err})") from None
    filename = root.findtext("filename")
    size_el = root.find("size")
    try:
        size = (
            _size(size_el.findtext("width"), size_el.findtext("height"), "size")
            if size_el is not None
            else None
        )
        objects = []
        for j, obj in enumerate(root.findall("object")):
            name = (obj.findtext("name") or "").strip()
            bb = obj.find("bndbox")
            if not name or bb is None:
                raise ValueError(f"object {j}: needs <name> and <bndbox>")
            fields = [bb.findtext(k) for k in ("xmin", "ymin", "xmax", "ymax")]
            if any(f is None for f in fields):
                raise ValueError(f"object {j}: <bndbox> needs xmin, ymin, xmax, ymax")
            box = check_box(fields, size, f"object {j} ({name})")
            difficult = (obj.findtext("difficult") or "0").strip() == "1"
            objects.append((name, box, difficult))
    except ValueError as err:
        raise AnnotationError(path, str(err)) from None
    if not objects:
        raise AnnotationError(path, "no <object> with a bounding box")
    return XmlAnnotation(filename.strip() if filename else None, size, objects)


def _choose_class(
    objects: Sequence[tuple[str, np.ndarray]], index_of: Callable[[str], int | None]
) -> tuple[int | None, str | None, np.ndarray]:
    """Label of the largest mapped box and the boxes of that class (all boxes if none maps)."""
    mapped = [(name, box, index_of(name)) for name, box in objects]
    known = [m for m in mapped if m[2] is not None]
    if not known:
        return None, None, np.stack([box for _, box in objects])
    area = [(b[2] - b[0]) * (b[3] - b[1]) for _, b, _ in known]
    name, _, label = known[int(np.argmax(area))]
    return label, name, np.stack([box for n, box, _ in known if n == name])


def _image_index(folder: Path) -> dict[str, Path]:
    """Image files below ``folder`` by lower-case stem (and by name)."""
    index: dict[str, Path] = {}
    for f in sorted(folder.rglob("*")):
        if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file():
            index.setdefault(f.stem.lower(), f)
            index.setdefault(f.name.lower(), f)
    return index


def _first_dir(root: Path, candidates: Iterable[str], pattern: str) -> Path | None:
    for rel in candidates:
        d = root / rel
        if d.is_dir() and next(d.glob(pattern), None) is not None:
            return d
    return None


def read_synsets(path: str | Path) -> dict[str, int]:
    """WordNet id -> class index from a synset file.

    Text files (``LOC_synset_mapping.txt``, ``synsets.txt``, ``synset_words.txt``,
    ``map_clsloc.txt``): the first token of each line is a WordNet id; indices follow the
    sorted order of the ids (torchvision's / timm's ImageNet order). JSON
    (``imagenet_class_index.json``): ``{"0": ["n01440764", "tench"], ...}`` gives them.
    """
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(path, "synset file not found")
    if path.suffix.lower() == ".json":
        data = _read_json(path)
        try:
            return {str(v[0]): int(k) for k, v in data.items()}
        except (AttributeError, TypeError, ValueError, IndexError, KeyError):
            raise AnnotationError(
                path, 'expected {"index": ["wnid", "name"], ...} (imagenet_class_index.json)'
            ) from None
    wnids = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines()):
        token = line.strip().split()[0] if line.strip() else ""
        if not token:
            continue
        if not _WNID.match(token):
            raise AnnotationError(path, f"line {n + 1}: {token!r} is not a WordNet id (n########)")
        wnids.append(token)
    if len(set(wnids)) != len(wnids):
        raise AnnotationError(path, "a WordNet id appears twice")
    return {w: i for i, w in enumerate(sorted(wnids))}


def read_ilsvrc(
    root: str | Path,
    *,
    synsets: str | Path | None = None,
    annotations: str | Path | None = None,
    images: str | Path | None = None,
    skip_bad: bool = False,
) -> Dataset:
    """ILSVRC validation: per-image XML, JPEGs and a synset file.

    Args:
        root: the dataset folder.
        synsets: synset file (default: the first of :data:`SYNSET_FILES` found in ``root`` or
            its parents); without one, the WordNet ids found must be all 1000 classes.
        annotations: the XML folder (default: ``Annotations/CLS-LOC/val``,
            ``ILSVRC/Annotations/CLS-LOC/val``, ``ILSVRC2012_bbox_val_v3/val``, ``val``,
            ``annotations`` or ``root`` itself, the first holding XML files).
        images: the image folder, searched recursively (default: ``Data/CLS-LOC/val``,
            ``ILSVRC/Data/CLS-LOC/val``, ``ILSVRC2012_img_val``, ``val``, ``images``, ``root``).
        skip_bad: record and leave out malformed annotations instead of raising.
    """
    root = Path(root)
    ann_dir = (
        Path(annotations)
        if annotations
        else _first_dir(
            root,
            (
                "Annotations/CLS-LOC/val",
                "ILSVRC/Annotations/CLS-LOC/val",
                "ILSVRC2012_bbox_val_v3/val",
                "val",
                "annotations",
                "Annotations",
                ".",
            ),
            "*.xml",
        )
    )
    if ann_dir is None or not ann_dir.is_dir():
        raise AnnotationError(root, "no folder of ILSVRC XML annotations found; pass --annotations")
    img_dir = (
        Path(images)
        if images
        else _first_image_dir(
            root,
            (
                "Data/CLS-LOC/val",
                "ILSVRC/Data/CLS-LOC/val",
                "ILSVRC2012_img_val",
                "val",
                "images",
                ".",
            ),
        )
    )
    xml_files = sorted(ann_dir.glob("*.xml"))
    parsed: list[tuple[Path, XmlAnnotation]] = []
    out = _Collector(skip_bad)
    for f in xml_files:
        try:
            parsed.append((f, parse_xml(f)))
        except AnnotationError as err:
            out.bad(f, err.cause)
    mapping = _synset_mapping(root, synsets, {n for _, a in parsed for n, _, _ in a.objects})
    index = _image_index(img_dir)
    samples = []
    for f, a in parsed:
        try:
            unknown = sorted({n for n, _, _ in a.objects if n not in mapping})
            if unknown:
                raise ValueError(f"WordNet id(s) {unknown} are not in the synset file")
            label, name, boxes = _choose_class([(n, b) for n, b, _ in a.objects], mapping.get)
            image = _find_image(index, a.filename, f.stem)
            samples.append(Sample(_key(image, root), image, boxes, label, a.size, str(f), name))
        except ValueError as err:
            out.bad(f, str(err))
    return _dataset(root, "ilsvrc", samples, out)


def _first_image_dir(root: Path, candidates: Iterable[str]) -> Path:
    for rel in candidates:
        d = root / rel
        if d.is_dir() and any(
            f.suffix.lower() in IMAGE_EXTENSIONS for f in d.rglob("*") if f.is_file()
        ):
            return d
    return root


def _find_image(index: Mapping[str, Path], filename: str | None, stem: str) -> Path:
    for name in (filename, Path(filename).stem if filename else None, stem):
        if name and name.lower() in index:
            return index[name.lower()]
    raise ValueError(f"image {filename or stem!r} not found below the image folder")


def _synset_mapping(root: Path, synsets: str | Path | None, found: set[str]) -> dict[str, int]:
    if synsets is not None:
        return read_synsets(synsets)
    for folder in (root, *root.parents[:2]):
        for name in SYNSET_FILES:
            if (folder / name).is_file():
                return read_synsets(folder / name)
    if len(found) == 1000 and all(_WNID.match(w) for w in found):
        return {w: i for i, w in enumerate(sorted(found))}
    raise AnnotationError(
        root,
        f"cannot number the classes: no synset file ({', '.join(SYNSET_FILES)}) and only "
        f"{len(found)} of the 1000 WordNet ids occur; pass --synsets LOC_synset_mapping.txt",
    )


def read_voc(
    root: str | Path,
    *,
    class_map: Mapping[str, int] | None = None,
    image_set: str | None = None,
    skip_bad: bool = False,
) -> Dataset:
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
    index = _image_index(img_dir)
    out = _Collector(skip_bad)
    samples = []
    lookup = _class_lookup(class_map)
    for f in xml_files:
        try:
            if not f.is_file():
                raise AnnotationError(f, "annotation file not found")
            a = parse_xml(f)
            label, name, boxes = _choose_class([(n, b) for n, b, _ in a.objects], lookup)
            image = _find_image(index, a.filename, f.stem)
            samples.append(Sample(_key(image, root), image, boxes, label, a.size, str(f), name))
        except AnnotationError as err:
            out.bad(err.path, err.cause)
        except ValueError as err:
            out.bad(f, str(err))
    return _dataset(root, "voc", samples, out)


def read_coco(
    path: str | Path,
    *,
    images: str | Path | None = None,
    class_map: Mapping[str, int] | None = None,
    skip_bad: bool = False,
) -> Dataset:
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
    ann = _coco_json(path)
    root = ann.parent.parent if ann.parent.name == "annotations" else ann.parent
    data = _read_json(ann)
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise AnnotationError(ann, "a COCO file needs the lists images, annotations, categories")
    if images is not None:
        img_dir = Path(images)
    else:
        split = ann.stem.split("_", 1)[-1]
        img_dir = next(
            (d for d in (root / split, root / "images", ann.parent) if d.is_dir()), ann.parent
        )
    out = _Collector(skip_bad)
    cats = {}
    for c in data["categories"]:
        if isinstance(c, dict) and "id" in c and "name" in c:
            cats[c["id"]] = str(c["name"])
    per_image: dict[Any, list[tuple[str, np.ndarray]]] = {}
    info = {}
    for i, im in enumerate(data["images"]):
        try:
            if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
                raise ValueError(f"images[{i}]: needs 'id' and 'file_name'")
            info[im["id"]] = (im["file_name"], _size(im.get("width"), im.get("height"), "size"))
        except ValueError as err:
            out.bad(ann, str(err))
    for i, a in enumerate(data["annotations"]):
        where = f"annotations[{i}]"
        try:
            if not isinstance(a, dict) or "image_id" not in a or "bbox" not in a:
                raise ValueError(f"{where}: needs 'image_id' and 'bbox'")
            if a.get("iscrowd", 0):
                continue
            if a["image_id"] not in info:
                raise ValueError(f"{where}: image_id {a['image_id']!r} is not in images")
            bbox = a["bbox"]
            if not isinstance(bbox, list) or len(bbox) != 4:
                raise ValueError(f"{where}: bbox must be [x, y, width, height], got {bbox!r}")
            x, y, w, h = (float(v) for v in bbox)
            size = info[a["image_id"]][1]
            box = check_box([x, y, x + w, y + h], size, where)
            name = cats.get(a.get("category_id"))
            if name is None:
                raise ValueError(f"{where}: category_id {a.get('category_id')!r} is unknown")
            per_image.setdefault(a["image_id"], []).append((name, box))
        except (ValueError, TypeError) as err:
            out.bad(ann, str(err))
    lookup = _class_lookup(class_map)
    samples = []
    for image_id, objects in per_image.items():
        file_name, size = info[image_id]
        label, name, boxes = _choose_class(objects, lookup)
        image = img_dir / file_name
        try:
            _require_file(image, f"image id {image_id}")
        except ValueError as err:
            out.bad(ann, str(err))
            continue
        samples.append(Sample(_key(image, root), image, boxes, label, size, str(ann), name))
    return _dataset(root, "coco", samples, out)


def _coco_json(path: Path) -> Path:
    if path.is_file():
        return path
    found = sorted(path.glob("instances_*.json"))
    found += sorted(path.glob("annotations/instances_*.json"))
    if len(found) != 1:
        raise AnnotationError(
            path,
            f"expected one instances_*.json, found {len(found)}; pass the JSON file itself",
        )
    return found[0]


def read_cub(root: str | Path, *, split: str = "test", skip_bad: bool = False) -> Dataset:
    """CUB-200-2011: the model's class index is the CUB class id - 1.

    Args:
        root: the ``CUB_200_2011`` folder.
        split: ``test`` (default, the WSOL evaluation split), ``train`` or ``all``.
        skip_bad: record and leave out malformed lines instead of raising.
    """
    root = Path(root)
    if split not in ("test", "train", "all"):
        raise ValueError(f"split must be test, train or all, got {split!r}")
    tables = {}
    for name in ("images.txt", "bounding_boxes.txt", "image_class_labels.txt"):
        f = root / name
        if not f.is_file():
            raise AnnotationError(
                f,
                "missing (a CUB-200-2011 folder has images.txt, "
                "bounding_boxes.txt, image_class_labels.txt)",
            )
        tables[name] = _id_table(f)
    split_file = root / "train_test_split.txt"
    is_train = _id_table(split_file) if split_file.is_file() else {}
    out = _Collector(skip_bad)
    samples = []
    img_dir = root / "images"
    for image_id, rest in tables["images.txt"].items():
        if split != "all" and is_train:
            flag = is_train.get(image_id, ["0"])[0] == "1"
            if flag != (split == "train"):
                continue
        where = f"image {image_id}"
        try:
            bb = tables["bounding_boxes.txt"].get(image_id)
            cl = tables["image_class_labels.txt"].get(image_id)
            if bb is None or cl is None or len(bb) != 4:
                raise ValueError(f"{where}: needs a line in bounding_boxes.txt and class labels")
            x, y, w, h = (float(v) for v in bb)
            box = check_box([x, y, x + w, y + h], None, where)
            image = img_dir / rest[0]
            _require_file(image, where)
            samples.append(
                Sample(_key(image, root), image, box[None], int(cl[0]) - 1, None, str(root))
            )
        except ValueError as err:
            out.bad(root / "bounding_boxes.txt", str(err))
    return _dataset(root, "cub", samples, out)


def _require_file(path: Path, where: str) -> None:
    if not path.is_file():
        raise ValueError(f"{where}: image file {path} not found")


def _id_table(path: Path) -> dict[str, list[str]]:
    table = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise AnnotationError(path, f"line {n + 1}: expected '<image id> <value...>'")
        table[parts[0]] = parts[1:]
    return table


# -- dispatch -------------------------------------------------------------------------------
def detect_format(path: str | Path) -> str:
    """Guess the dataset format of a folder or file (see :data:`FORMATS`)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"dataset {path} does not exist")
    if path.is_file():
        if path.suffix.lower() != ".json":
            raise AnnotationError(path, "a dataset file must be a JSON (dev or COCO format)")
        data = _read_json(path)
        return "coco" if isinstance(data, dict) and "annotations" in data else "dev"
    if (path / "annotations.json").is_file():
        return "dev"
    if (path / "images.txt").is_file() and (path / "bounding_boxes.txt").is_file():
        return "cub"
    if (path / "Annotations").is_dir() and (path / "JPEGImages").is_dir():
        return "voc"
    if next(path.glob("instances_*.json"), None) or next(
        path.glob("annotations/instances_*.json"), None
    ):
        return "coco"
    if any((path / n).is_file() for n in SYNSET_FILES) or next(path.glob("*.xml"), None):
        return "ilsvrc"
    for rel in ("Annotations/CLS-LOC/val", "ILSVRC/Annotations/CLS-LOC/val", "val"):
        if (path / rel).is_dir() and next((path / rel).glob("*.xml"), None):
            return "ilsvrc"
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
    """Read any supported dataset (see the module docstring)."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    fmt = detect_format(path) if format == "auto" else format
    if fmt == "dev":
        return read_dev(annotations or path, skip_bad=skip_bad)
    if fmt == "ilsvrc":
        return read_ilsvrc(
            path, synsets=synsets, annotations=annotations, images=images, skip_bad=skip_bad
        )
    if fmt == "voc":
        return read_voc(path, class_map=class_map, image_set=image_set, skip_bad=skip_bad)
    if fmt == "coco":
        return read_coco(annotations or path, images=images, class_map=class_map, skip_bad=skip_bad)
    return read_cub(path, split=image_set or "test", skip_bad=skip_bad)


def read_class_map(path: str | Path, labels: Sequence[str] | None = None) -> dict[str, int]:
    """{dataset class name: model class index} from a JSON object or a text file of names.

    A text file lists the model's classes, one per line, in index order. A JSON object maps names
    to indices. Names are matched case-insensitively.
    """
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(path, "class map file not found")
    if path.suffix.lower() == ".json":
        data = _read_json(path)
        if not isinstance(data, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in data.values()
        ):
            raise AnnotationError(path, 'expected {"class name": model class index, ...}')
        return {str(k): int(v) for k, v in data.items()}
    names = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return {n: i for i, n in enumerate(names)}


def _class_lookup(class_map: Mapping[str, int] | None) -> Callable[[str], int | None]:
    if not class_map:
        return lambda name: None
    folded = {k.lower(): v for k, v in class_map.items()}
    return lambda name: folded.get(name.lower())


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise AnnotationError(path, "annotation file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AnnotationError(path, f"not valid JSON ({err})") from None


def _dataset(root: Path, fmt: str, samples: list[Sample], out: _Collector) -> Dataset:
    seen: dict[str, Sample] = {}
    for s in samples:
        if s.key in seen:
            out.bad(s.source, f"image {s.key} is annotated twice")
            continue
        seen[s.key] = s
    # By file name first: the same order whether images sit in class folders or not.
    ordered = sorted(seen.values(), key=lambda s: (s.key.rsplit("/", 1)[-1], s.key))
    return Dataset(root=root, format=fmt, samples=ordered, skipped=out.skipped)
