"""Dataset readers on tiny fixtures generated in tmp_path: dev JSON, ILSVRC, VOC, COCO, CUB."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eigencam.errors import AnnotationError, EigenCAMError
from eigencam.evaluation.datasets import (
    detect_format,
    open_dataset,
    parse_xml,
    read_class_map,
    read_coco,
    read_cub,
    read_dev,
    read_ilsvrc,
    read_synsets,
    read_voc,
)


def image(path: Path, size=(40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 60, 30)).save(path)
    return path


def voc_xml(path: Path, filename: str, size, objects, *, extra: str = "") -> Path:
    objs = "".join(
        f"<object><name>{name}</name><difficult>{int(diff)}</difficult><bndbox>"
        f"<xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax>"
        f"</bndbox></object>"
        for name, b, diff in objects
    )
    size_xml = f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"<annotation><filename>{filename}</filename>{size_xml}{objs}{extra}</annotation>"
    )
    return path


# -- dev annotations.json ----------------------------------------------------------------------
def dev_fixture(root: Path, entries: list) -> Path:
    for e in entries:
        if isinstance(e, dict) and "file" in e:
            image(root / "images" / e["file"], (e.get("width", 40), e.get("height", 30)))
    (root / "annotations.json").write_text(json.dumps({"info": {}, "images": entries}))
    return root


def test_read_dev(tmp_path):
    root = dev_fixture(
        tmp_path,
        [
            {"file": "b.jpg", "width": 40, "height": 30, "boxes": [[1, 2, 30, 25]], "class_id": 7},
            {
                "file": "a.jpg",
                "width": 40,
                "height": 30,
                "boxes": [[0, 0, 10, 10], [5, 5, 45, 35]],
                "labels": [3],
            },
        ],
    )
    ds = read_dev(root)
    assert ds.format == "dev" and len(ds) == 2
    a, b = ds.samples  # sorted by key
    assert a.key == "images/a.jpg" and b.key == "images/b.jpg"
    assert a.label == 3 and b.label == 7
    assert a.boxes.tolist() == [[0, 0, 10, 10], [5, 5, 40, 30]]  # clipped to the image
    assert a.size == (40, 30) and a.path == root / "images" / "a.jpg"
    assert read_dev(root / "annotations.json").samples[0].key == "images/a.jpg"
    assert detect_format(root) == "dev"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"file": "x.jpg"}, "needs 'file' and 'boxes'"),
        ({"file": "x.jpg", "boxes": []}, "non-empty list"),
        ({"file": "x.jpg", "boxes": [[1, 2, 3]]}, "4 finite numbers"),
        ({"file": "x.jpg", "boxes": [[5, 5, 2, 9]]}, "no area"),
        ({"file": "x.jpg", "boxes": [["a", 1, 2, 3]]}, "4 numbers"),
        ({"file": "x.jpg", "width": 10, "height": 10, "boxes": [[20, 20, 30, 30]]}, "outside"),
        ({"file": "x.jpg", "boxes": [[1, 1, 5, 5]], "class_id": "cat"}, "integer"),
        ({"file": "x.jpg", "boxes": [[1, 1, 5, 5]], "width": "w", "height": 3}, "two integers"),
        ({"file": "missing.jpg", "boxes": [[1, 1, 5, 5]]}, "not found"),
    ],
)
def test_dev_malformed_entries_raise_or_are_skipped(tmp_path, entry, message):
    image(tmp_path / "images" / "x.jpg")
    image(tmp_path / "images" / "ok.jpg")
    good = {"file": "ok.jpg", "boxes": [[1, 1, 5, 5]], "class_id": 1}
    (tmp_path / "annotations.json").write_text(json.dumps({"images": [good, entry]}))
    with pytest.raises(AnnotationError, match=message) as info:
        read_dev(tmp_path)
    assert str(tmp_path / "annotations.json") in str(info.value)
    assert "--skip-bad" in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, EigenCAMError)
    ds = read_dev(tmp_path, skip_bad=True)
    assert [s.key for s in ds.samples] == ["images/ok.jpg"]
    assert len(ds.skipped) == 1 and message.split()[0] in ds.skipped[0][1]


def test_dev_structural_errors(tmp_path):
    with pytest.raises(AnnotationError, match="not found"):
        read_dev(tmp_path)
    (tmp_path / "annotations.json").write_text("{broken")
    with pytest.raises(AnnotationError, match="not valid JSON"):
        read_dev(tmp_path)
    (tmp_path / "annotations.json").write_text(json.dumps({"images": {}}))
    with pytest.raises(AnnotationError, match="one entry per image"):
        read_dev(tmp_path, skip_bad=True)  # the file itself is unusable: never skipped


def test_duplicate_images_are_an_error(tmp_path):
    image(tmp_path / "images" / "a.jpg")
    e = {"file": "a.jpg", "boxes": [[1, 1, 5, 5]]}
    (tmp_path / "annotations.json").write_text(json.dumps({"images": [e, e]}))
    with pytest.raises(AnnotationError, match="annotated twice"):
        read_dev(tmp_path)
    assert len(read_dev(tmp_path, skip_bad=True)) == 1


# -- ILSVRC --------------------------------------------------------------------------------------
WNIDS = ["n01440764", "n01443537", "n02102040"]


def ilsvrc_fixture(root: Path, synset_file: str | None = "LOC_synset_mapping.txt") -> Path:
    ann = root / "ILSVRC2012_bbox_val_v3" / "val"
    # Images in class folders (torchvision's val layout) and one flat.
    image(root / "val" / "n02102040" / "ILSVRC2012_val_00000001.JPEG", (50, 40))
    image(root / "val" / "n01443537" / "ILSVRC2012_val_00000002.JPEG", (60, 40))
    voc_xml(
        ann / "ILSVRC2012_val_00000001.xml",
        "ILSVRC2012_val_00000001",
        (50, 40),
        [("n02102040", (5, 6, 30, 35), False), ("n02102040", (20, 1, 50, 20), False)],
    )
    voc_xml(
        ann / "ILSVRC2012_val_00000002.xml",
        "ILSVRC2012_val_00000002",
        (60, 40),
        [("n01443537", (0, 0, 60, 40), False)],
    )
    if synset_file == "LOC_synset_mapping.txt":
        # Deliberately unsorted: indices follow the sorted WordNet ids.
        lines = ["n02102040 English springer", "n01440764 tench, Tinca tinca", "n01443537 goldfish"]
        (root / synset_file).write_text("\n".join(lines) + "\n")
    elif synset_file == "imagenet_class_index.json":
        (root / synset_file).write_text(
            json.dumps(
                {
                    "0": ["n02102040", "springer"],
                    "1": ["n01440764", "tench"],
                    "2": ["n01443537", "goldfish"],
                }
            )
        )
    return root


def test_read_ilsvrc(tmp_path):
    root = ilsvrc_fixture(tmp_path)
    assert detect_format(root) == "ilsvrc"
    ds = read_ilsvrc(root)
    assert ds.format == "ilsvrc"
    one, two = ds.samples
    assert one.key == "val/n02102040/ILSVRC2012_val_00000001.JPEG"
    assert one.label == 2 and two.label == 1  # sorted ids: n01440764, n01443537, n02102040
    assert one.boxes.tolist() == [[5, 6, 30, 35], [20, 1, 50, 20]]
    assert one.size == (50, 40) and one.class_name == "n02102040"
    assert open_dataset(root).samples[0].label == 2


def test_ilsvrc_synsets_from_json_keep_their_indices(tmp_path):
    root = ilsvrc_fixture(tmp_path, "imagenet_class_index.json")
    ds = read_ilsvrc(root)
    assert [s.label for s in ds.samples] == [0, 2]


def test_ilsvrc_without_synsets_needs_all_classes(tmp_path):
    root = ilsvrc_fixture(tmp_path, None)
    with pytest.raises(AnnotationError, match="--synsets"):
        read_ilsvrc(root)
    (tmp_path / "my_synsets.txt").write_text("\n".join(WNIDS))
    assert [s.label for s in read_ilsvrc(root, synsets=tmp_path / "my_synsets.txt").samples] == [
        2,
        1,
    ]


def test_ilsvrc_bad_files(tmp_path):
    root = ilsvrc_fixture(tmp_path)
    ann = root / "ILSVRC2012_bbox_val_v3" / "val"
    (ann / "ILSVRC2012_val_00000003.xml").write_text("<annotation><object>")
    voc_xml(
        ann / "ILSVRC2012_val_00000004.xml",
        "ILSVRC2012_val_00000004",
        (10, 10),
        [("n01440764", (1, 1, 5, 5), False)],
    )  # no image file
    voc_xml(
        ann / "ILSVRC2012_val_00000005.xml", "x", (10, 10), [("n09999999", (1, 1, 5, 5), False)]
    )
    with pytest.raises(AnnotationError, match="ILSVRC2012_val_00000003.xml: cannot read the XML"):
        read_ilsvrc(root)
    ds = read_ilsvrc(root, skip_bad=True)
    assert len(ds) == 2
    reasons = dict((Path(k).name, r) for k, r in ds.skipped)
    assert "cannot read the XML" in reasons["ILSVRC2012_val_00000003.xml"]
    assert "not found" in reasons["ILSVRC2012_val_00000004.xml"]
    assert "not in the synset file" in reasons["ILSVRC2012_val_00000005.xml"]
    (root / "LOC_synset_mapping.txt").write_text("tench\n")
    with pytest.raises(AnnotationError, match="not a WordNet id"):
        read_synsets(root / "LOC_synset_mapping.txt")


def test_parse_xml_errors(tmp_path):
    f = voc_xml(tmp_path / "a.xml", "a.jpg", (10, 10), [])
    with pytest.raises(AnnotationError, match="no <object>"):
        parse_xml(f)
    f.write_text(
        "<annotation><object><name>cat</name><bndbox><xmin>1</xmin></bndbox></object></annotation>"
    )
    with pytest.raises(AnnotationError, match="xmin, ymin, xmax, ymax"):
        parse_xml(f)
    f.write_text("<annotation><object><bndbox/></object></annotation>")
    with pytest.raises(AnnotationError, match="<name> and <bndbox>"):
        parse_xml(f)


# -- VOC -----------------------------------------------------------------------------------------
def voc_fixture(root: Path) -> Path:
    image(root / "JPEGImages" / "2008_000001.jpg", (80, 60))
    image(root / "JPEGImages" / "2008_000002.jpg", (80, 60))
    voc_xml(
        root / "Annotations" / "2008_000001.xml",
        "2008_000001.jpg",
        (80, 60),
        [
            ("dog", (10, 10, 30, 30), False),
            ("cat", (0, 0, 70, 50), True),
            ("dog", (40, 5, 80, 20), False),
        ],
    )
    voc_xml(
        root / "Annotations" / "2008_000002.xml",
        "2008_000002.jpg",
        (80, 60),
        [("person", (1, 1, 20, 50), False)],
    )
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "val.txt").write_text("2008_000002\n")
    return root


def test_read_voc_with_and_without_class_map(tmp_path):
    root = voc_fixture(tmp_path)
    assert detect_format(root) == "voc"
    plain = read_voc(root)
    assert [s.label for s in plain.samples] == [None, None]
    assert len(plain.samples[0].boxes) == 3  # every object counts when the class is unknown
    mapped = read_voc(root, class_map={"Dog": 5, "cat": 9})
    first = mapped.samples[0]
    # The largest mapped box is the cat: the image is a cat, judged on the cat's boxes.
    assert first.label == 9 and first.boxes.tolist() == [[0, 0, 70, 50]]
    assert mapped.samples[1].label is None
    only_val = read_voc(root, image_set="val")
    assert [s.key for s in only_val.samples] == ["JPEGImages/2008_000002.jpg"]
    with pytest.raises(AnnotationError, match="image set list not found"):
        read_voc(root, image_set="test")


def test_read_class_map(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps({"dog": 3}))
    assert read_class_map(tmp_path / "m.json") == {"dog": 3}
    (tmp_path / "labels.txt").write_text("cat\ndog\n\n")
    assert read_class_map(tmp_path / "labels.txt") == {"cat": 0, "dog": 1}
    (tmp_path / "bad.json").write_text(json.dumps({"dog": "three"}))
    with pytest.raises(AnnotationError, match="model class index"):
        read_class_map(tmp_path / "bad.json")


# -- COCO ----------------------------------------------------------------------------------------
def coco_fixture(root: Path) -> Path:
    image(root / "val2017" / "000000000001.jpg", (100, 80))
    image(root / "val2017" / "000000000002.jpg", (100, 80))
    data = {
        "images": [
            {"id": 1, "file_name": "000000000001.jpg", "width": 100, "height": 80},
            {"id": 2, "file_name": "000000000002.jpg", "width": 100, "height": 80},
            {"id": 3, "file_name": "000000000003.jpg", "width": 100, "height": 80},
        ],
        "annotations": [
            {"image_id": 1, "bbox": [10, 20, 30, 40], "category_id": 18, "iscrowd": 0},
            {"image_id": 1, "bbox": [0, 0, 100, 80], "category_id": 1, "iscrowd": 1},
            {"image_id": 2, "bbox": [5, 5, 10, 10], "category_id": 1, "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}],
    }
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(data))
    return root


def test_read_coco(tmp_path):
    root = coco_fixture(tmp_path)
    assert detect_format(root) == "coco"
    ds = read_coco(root, class_map={"dog": 207})
    assert [s.key for s in ds.samples] == ["val2017/000000000001.jpg", "val2017/000000000002.jpg"]
    dog, person = ds.samples
    assert dog.boxes.tolist() == [[10, 20, 40, 60]] and dog.label == 207  # crowd box ignored
    assert person.label is None
    assert open_dataset(root / "annotations" / "instances_val2017.json").format == "coco"


def test_coco_bad_annotation(tmp_path):
    root = coco_fixture(tmp_path)
    f = root / "annotations" / "instances_val2017.json"
    data = json.loads(f.read_text())
    data["annotations"].append({"image_id": 2, "bbox": [1, 2], "category_id": 1})
    data["annotations"].append({"image_id": 99, "bbox": [1, 2, 3, 4], "category_id": 1})
    f.write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match=r"annotations\[3\].*bbox"):
        read_coco(root)
    ds = read_coco(root, skip_bad=True)
    assert len(ds) == 2 and len(ds.skipped) == 2


# -- CUB -----------------------------------------------------------------------------------------
def test_read_cub(tmp_path):
    image(tmp_path / "images" / "001.Albatross" / "a.jpg")
    image(tmp_path / "images" / "002.Auklet" / "b.jpg")
    (tmp_path / "images.txt").write_text("1 001.Albatross/a.jpg\n2 002.Auklet/b.jpg\n")
    (tmp_path / "bounding_boxes.txt").write_text("1 2.0 3.0 10.0 20.0\n2 0 0 5 5\n")
    (tmp_path / "image_class_labels.txt").write_text("1 1\n2 2\n")
    (tmp_path / "train_test_split.txt").write_text("1 0\n2 1\n")
    assert detect_format(tmp_path) == "cub"
    test = read_cub(tmp_path)
    assert [(s.key, s.label) for s in test.samples] == [("images/001.Albatross/a.jpg", 0)]
    assert test.samples[0].boxes.tolist() == [[2.0, 3.0, 12.0, 23.0]]
    assert len(read_cub(tmp_path, split="all")) == 2
    assert read_cub(tmp_path, split="train").samples[0].label == 1


def test_unknown_format(tmp_path):
    with pytest.raises(AnnotationError, match="--format"):
        detect_format(tmp_path)
    with pytest.raises(FileNotFoundError):
        detect_format(tmp_path / "nope")
    with pytest.raises(ValueError, match="format must be"):
        open_dataset(tmp_path, format="imagenet")


def test_parts_and_limit(tmp_path):
    entries = [{"file": f"{i}.jpg", "boxes": [[1, 1, 5, 5]]} for i in range(7)]
    ds = read_dev(dev_fixture(tmp_path, entries))
    one, two = ds.part(1, 2), ds.part(2, 2)
    assert len(one) == 4 and len(two) == 3
    assert not {s.key for s in one.samples} & {s.key for s in two.samples}
    assert [s.key for s in ds.head(2).samples] == ["images/0.jpg", "images/1.jpg"]
    with pytest.raises(ValueError):
        ds.part(3, 2)
    assert np.all([s.label is None for s in ds.samples])
