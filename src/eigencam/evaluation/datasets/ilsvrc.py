"""ILSVRC validation: one PASCAL-style XML per image, JPEGs anywhere below the root (flat or in
class folders) and a synset file numbering the WordNet ids.

Class indices follow the sorted order of the WordNet ids (torchvision's and timm's ImageNet-1k
order) unless the synset file is a JSON ``{"index": [wnid, name]}`` that gives them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path

from eigencam.errors import AnnotationError
from eigencam.evaluation.datasets.base import Collector, Dataset, read_json
from eigencam.evaluation.datasets.voc import XmlAnnotation, image_index, parse_xml, xml_sample
from eigencam.io.images import IMAGE_EXTENSIONS

SYNSET_FILES = (
    "LOC_synset_mapping.txt",
    "synsets.txt",
    "synset_words.txt",
    "imagenet_class_index.json",
    "map_clsloc.txt",
)
# Where the XML and the images are looked for, first match wins.
ANNOTATION_DIRS = (
    "Annotations/CLS-LOC/val",
    "ILSVRC/Annotations/CLS-LOC/val",
    "ILSVRC2012_bbox_val_v3/val",
    "val",
    "annotations",
    "Annotations",
    ".",
)
IMAGE_DIRS = (
    "Data/CLS-LOC/val",
    "ILSVRC/Data/CLS-LOC/val",
    "ILSVRC2012_img_val",
    "val",
    "images",
    ".",
)
_WNID = re.compile(r"^n\d{8}$")


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
        data = read_json(path)
        try:
            return {str(v[0]): int(k) for k, v in data.items()}
        except (AttributeError, TypeError, ValueError, IndexError, KeyError):
            raise AnnotationError(
                path, 'expected {"index": ["wnid", "name"], ...} (imagenet_class_index.json)'
            ) from None
    wnids = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines()):
        token = line.split()[0] if line.strip() else ""
        if token and not _WNID.match(token):
            raise AnnotationError(path, f"line {n + 1}: {token!r} is not a WordNet id (n########)")
        if token:
            wnids.append(token)
    if len(set(wnids)) != len(wnids):
        raise AnnotationError(path, "a WordNet id appears twice")
    return {w: i for i, w in enumerate(sorted(wnids))}


def _first_dir(root: Path, candidates: Iterable[str], holds: Callable[[Path], bool]) -> Path | None:
    return next(
        (root / rel for rel in candidates if (root / rel).is_dir() and holds(root / rel)), None
    )


def _has_xml(folder: Path) -> bool:
    return next(folder.glob("*.xml"), None) is not None


def _has_images(folder: Path) -> bool:
    return any(f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file() for f in folder.rglob("*"))


def detect(folder: Path) -> bool:
    """A synset file or XML at the root, or XML in a validation folder."""
    if any((folder / n).is_file() for n in SYNSET_FILES) or _has_xml(folder):
        return True
    val = ("Annotations/CLS-LOC/val", "ILSVRC/Annotations/CLS-LOC/val", "val")
    return _first_dir(folder, val, _has_xml) is not None


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
        annotations: the XML folder (default: the first of :data:`ANNOTATION_DIRS` holding XML
            files).
        images: the image folder, searched recursively (default: the first of
            :data:`IMAGE_DIRS` holding images).
        skip_bad: record and leave out malformed annotations instead of raising.
    """
    root = Path(root)
    ann_dir = Path(annotations) if annotations else _first_dir(root, ANNOTATION_DIRS, _has_xml)
    if ann_dir is None or not ann_dir.is_dir():
        raise AnnotationError(root, "no folder of ILSVRC XML annotations found; pass --annotations")
    img_dir = Path(images) if images else _first_dir(root, IMAGE_DIRS, _has_images) or root
    out = Collector(skip_bad)
    parsed: list[tuple[Path, XmlAnnotation]] = []
    for f in sorted(ann_dir.glob("*.xml")):
        with out.entry(f):
            parsed.append((f, parse_xml(f)))
    mapping = _synset_mapping(root, synsets, {n for _, a in parsed for n, _, _ in a.objects})
    index = image_index(img_dir)
    samples = []
    for f, a in parsed:
        with out.entry(f):
            unknown = sorted({n for n, _, _ in a.objects if n not in mapping})
            if unknown:
                raise AnnotationError(f, f"WordNet id(s) {unknown} are not in the synset file")
            samples.append(xml_sample(f, a, index, root, mapping.get))
    return out.dataset(root, "ilsvrc", samples)


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
