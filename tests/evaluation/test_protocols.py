"""The two localization protocols on hand-built IoU tables with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from eigencam.evaluation.metrics.protocols import (
    CHOE_GRID,
    PAPER_THRESHOLDS,
    box_accuracy,
    choose_threshold,
    grid_columns,
    maxboxacc,
    maxboxacc_v2,
    paper_protocol,
    parse_grid,
    union_grid,
)


def test_default_grids():
    assert PAPER_THRESHOLDS == (0.05, 0.06, 0.07, 0.08, 0.09, 0.1, 0.11, 0.12, 0.13, 0.14, 0.15)
    assert len(CHOE_GRID) == 100 and CHOE_GRID[0] == 0.0 and CHOE_GRID[-1] == 0.99


def test_parse_grid():
    assert parse_grid("0.05:0.15:0.01") == PAPER_THRESHOLDS
    assert parse_grid("0:0.99:0.01") == CHOE_GRID
    assert parse_grid("0.2,0.1, 0.1") == (0.1, 0.2)
    assert parse_grid("0.1:0.35:0.1") == (0.1, 0.2, 0.3)
    for bad in ("", "a:b:c", "0.1:0.2", "0.2:0.1:0.01", "0.1:0.2:0", "1.5", "-0.1,0.2"):
        with pytest.raises(ValueError):
            parse_grid(bad)


def test_union_grid_and_columns():
    u = union_grid((0.1, 0.2), (0.2, 0.30000000000000004, 0.0))
    assert u == (0.0, 0.1, 0.2, 0.3)
    assert grid_columns(u, (0.3, 0.1)).tolist() == [3, 1]
    with pytest.raises(ValueError, match="not in the evaluated grid"):
        grid_columns(u, (0.5,))


def test_box_accuracy_and_choice():
    iou = np.array([[0.6, 0.4], [0.5, 0.55], [0.1, 0.7]])
    assert box_accuracy(iou, 0.5).tolist() == pytest.approx([2 / 3, 2 / 3])
    assert box_accuracy(iou, 0.5, np.array([True, False, True])).tolist() == [0.5, 0.5]
    assert np.isnan(box_accuracy(iou, 0.5, np.zeros(3, bool))).all()
    assert choose_threshold([0.2, 0.5, 0.5, 0.1], [0.1, 0.2, 0.3, 0.4]) == 0.2  # first max
    assert choose_threshold([np.nan, np.nan], [0.1, 0.2]) is None


# Five images, two thresholds. Labels: 3, 1, 2, 0, unknown(-1). Top-1 right for images 0 and 1,
# image 2's class is second in the top 5, image 3's is not in the top 5.
LABELS = np.array([3, 1, 2, 0, -1])
TOP5 = np.array(
    [
        [3, 1, 2, 4, 5],
        [1, 0, 2, 3, 4],
        [5, 2, 1, 0, 4],
        [9, 8, 7, 6, 5],
        [4, 3, 2, 1, 0],
    ]
)
# IoU of the ground-truth class's map, columns tau = 0.1, 0.2.
IOU_GT = np.array([[0.8, 0.3], [0.6, 0.6], [0.9, 0.2], [0.7, 0.7], [0.2, 0.9]])
# IoU of the top-1 class's map (equal to the GT map where the prediction is right).
IOU_TOP1 = np.array([[0.8, 0.3], [0.6, 0.6], [0.1, 0.1], [0.2, 0.6], [0.2, 0.9]])


def test_paper_protocol_class_specific_known_answers():
    r = paper_protocol(IOU_GT, IOU_TOP1, LABELS, TOP5, (0.1, 0.2), class_specific=True)
    c = r["curves"]
    # GT-known over the 4 labelled images: tau 0.1 -> all 4 boxes right; tau 0.2 -> 2 of 4.
    assert c["gt_known_acc"] == [1.0, 0.5]
    # Top-1 loc: right class (images 0, 1) and right box -> tau 0.1: 2/4, tau 0.2: 1/4.
    assert c["top1_loc_acc"] == [0.5, 0.25]
    # Top-5 loc: class in top 5 (0, 1, 2) and right box -> tau 0.1: 3/4, tau 0.2: 1/4.
    assert c["top5_loc_acc"] == [0.75, 0.25]
    # Class-independent: the top-1 map's box, all 5 images: tau 0.1 -> 0, 1 -> 2/5; 0.2 -> 1,3,4.
    assert c["class_independent_acc"] == [0.4, 0.6]
    assert r["chosen_threshold"] == 0.1 and r["threshold_source"].startswith("this data")
    a = r["at_chosen"]
    assert a["gt_known_error"] == 0.0
    assert a["top1_loc_error"] == 0.5
    assert a["top5_loc_error"] == 0.25
    assert a["class_independent_error"] == pytest.approx(0.6)
    split = r["by_classification"]
    assert split["correct"] == {"images": 2, "gt_known_acc": 1.0, "class_independent_acc": 1.0}
    assert split["wrong"] == {"images": 2, "gt_known_acc": 1.0, "class_independent_acc": 0.0}
    assert r["images"] == {"all": 5, "labelled": 4, "gt_known": 4}


def test_top1_localization_never_exceeds_classification_accuracy():
    rng = np.random.default_rng(0)
    n = 200
    labels = rng.integers(0, 10, n)
    top5 = np.stack([rng.permutation(10)[:5] for _ in range(n)])
    iou = rng.random((n, 3))
    r = paper_protocol(iou, iou, labels, top5, (0.1, 0.2, 0.3), class_specific=True)
    acc1 = float((top5[:, 0] == labels).mean())
    acc5 = float((top5 == labels[:, None]).any(1).mean())
    assert max(r["curves"]["top1_loc_acc"]) <= acc1
    assert max(r["curves"]["top5_loc_acc"]) <= acc5
    assert all(t <= g for t, g in zip(r["curves"]["top1_loc_acc"], r["curves"]["gt_known_acc"]))


def test_paper_protocol_class_agnostic_uses_every_image_and_calibration():
    r = paper_protocol(
        IOU_GT, IOU_GT, LABELS, TOP5, (0.1, 0.2), class_specific=False, calibrated=0.2
    )
    assert r["curves"]["gt_known_acc"] == [0.8, 0.6]  # all 5 images count
    assert r["curves"]["class_independent_acc"] == r["curves"]["gt_known_acc"]
    assert r["chosen_threshold"] == 0.2 and r["threshold_source"] == "calibration"
    assert r["best_threshold_on_this_data"] == 0.1
    assert r["at_chosen"]["gt_known_error"] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="not in this run's grid"):
        paper_protocol(
            IOU_GT, IOU_GT, LABELS, TOP5, (0.1, 0.2), class_specific=False, calibrated=0.3
        )


def test_paper_protocol_without_labels():
    r = paper_protocol(IOU_GT, IOU_GT, np.full(5, -1), TOP5, (0.1, 0.2), class_specific=True)
    assert r["curves"]["gt_known_acc"] == [None, None]
    assert r["curves"]["top1_loc_acc"] == [None, None]
    # Chosen on class-independent accuracy instead: [4/5, 3/5].
    assert r["chosen_threshold"] == 0.1
    assert r["at_chosen"]["class_independent_error"] == pytest.approx(0.2)
    assert r["at_chosen"]["gt_known_error"] is None


def test_maxboxacc_known_answers():
    iou = np.array([[0.5, 0.9, 0.4], [0.6, 0.1, 0.2], [0.2, 0.6, 0.55]])
    r = maxboxacc(iou, (0.1, 0.2, 0.3))
    assert r["curve"] == pytest.approx([2 / 3, 2 / 3, 1 / 3])
    assert r["value"] == pytest.approx(2 / 3) and r["threshold"] == 0.1
    cal = maxboxacc(iou, (0.1, 0.2, 0.3), calibrated=0.3)
    assert cal["value"] == pytest.approx(1 / 3) and cal["best_on_this_data"] == pytest.approx(2 / 3)
    masked = maxboxacc(iou, (0.1, 0.2, 0.3), mask=np.array([True, True, False]))
    assert masked["curve"] == [1.0, 0.5, 0.0]


def test_maxboxacc_v2_known_answers():
    iou = np.array([[0.35, 0.75], [0.55, 0.45], [0.1, 0.31]])
    r = maxboxacc_v2(iou, (0.1, 0.2))
    # delta 0.3: [2/3, 3/3] -> 1; delta 0.5: [1/3, 1/3] -> 1/3; delta 0.7: [0, 1/3] -> 1/3.
    assert r["per_iou"] == pytest.approx({"0.3": 1.0, "0.5": 1 / 3, "0.7": 1 / 3})
    assert r["thresholds"] == {"0.3": 0.2, "0.5": 0.1, "0.7": 0.2}
    assert r["value"] == pytest.approx(5 / 9)
    cal = maxboxacc_v2(iou, (0.1, 0.2), calibrated={"0.3": 0.1, "0.5": 0.2, "0.7": 0.1})
    assert cal["value"] == pytest.approx((2 / 3 + 1 / 3 + 0) / 3)
    assert cal["best_on_this_data"] == pytest.approx(5 / 9)
    assert cal["best_thresholds_on_this_data"] == r["thresholds"]
    with pytest.raises(ValueError, match="IoU 0.7"):
        maxboxacc_v2(iou, (0.1, 0.2), calibrated={"0.3": 0.1, "0.5": 0.2})
