"""CUB-200-2011: the tables of :data:`TABLES` and ``train_test_split.txt``."""

from __future__ import annotations

from pathlib import Path

from eigencam.errors import AnnotationError, check_choice
from eigencam.evaluation.datasets import base

TABLES = ("images.txt", "bounding_boxes.txt", "image_class_labels.txt")


def detect(folder: Path) -> bool:
    return (folder / "images.txt").is_file() and (folder / "bounding_boxes.txt").is_file()


def read_cub(root: str | Path, *, split: str = "test", skip_bad: bool = False) -> base.Dataset:
    """CUB-200-2011: the model's class index is the CUB class id - 1.

    Args:
        root: the ``CUB_200_2011`` folder.
        split: ``test`` (default, the WSOL evaluation split), ``train`` or ``all``.
        skip_bad: record and leave out malformed lines instead of raising.
    """
    root = Path(root)
    check_choice("split", split, ("test", "train", "all"))
    for name in TABLES:
        if not (root / name).is_file():
            raise AnnotationError(
                root / name, f"missing (a CUB-200-2011 folder has {', '.join(TABLES)})"
            )
    files, boxes, classes = (_id_table(root / name) for name in TABLES)
    split_file = root / "train_test_split.txt"
    is_train = _id_table(split_file) if split_file.is_file() else {}
    out = base.Collector(skip_bad)
    samples = []
    for image_id, rest in files.items():
        train = is_train.get(image_id, ["0"])[0] == "1"
        if split != "all" and is_train and train != (split == "train"):
            continue
        where = f"image {image_id}"
        with out.entry(root / "bounding_boxes.txt"):
            bb, cl = boxes.get(image_id), classes.get(image_id)
            if bb is None or cl is None or len(bb) != 4 or not cl[0].isdigit():
                raise AnnotationError(where, "needs a line in bounding_boxes.txt and class labels")
            box = base.xywh_box(bb, None, where)
            image = base.require_file(root / "images" / rest[0], where)
            samples.append(
                base.Sample(
                    base.key_of(image, root), image, box[None], int(cl[0]) - 1, None, str(root)
                )
            )
    return out.dataset(root, "cub", samples)


def _id_table(path: Path) -> dict[str, list[str]]:
    table = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        parts = line.split()
        if parts and len(parts) < 2:
            raise AnnotationError(path, f"line {n + 1}: expected '<image id> <value...>'")
        if parts:
            table[parts[0]] = parts[1:]
    return table
