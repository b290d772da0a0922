"""PASCAL VOC: ``Annotations/*.xml``, ``JPEGImages/``, optional ``ImageSets/Main/<set>.txt``.

A ``class_map`` ({dataset class name: model class index}) names the model's class of each
object; without it the class is unknown and only class-agnostic measures apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from eigencam.errors import AnnotationError
from eigencam.evaluation.datasets.base import Collector, Dataset, class_lookup
from eigencam.evaluation.datasets.pascal import image_index, parse_xml, xml_sample


def detect(folder: Path) -> bool:
    return (folder / "Annotations").is_dir() and (folder / "JPEGImages").is_dir()


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
    index = image_index(img_dir)
    lookup = class_lookup(class_map)
    out = Collector(skip_bad)
    samples = []
    for f in xml_files:
        with out.entry(f):
            samples.append(xml_sample(f, parse_xml(f), index, root, lookup))
    return out.dataset(root, "voc", samples)
