"""Detectors: the map mapped back through the model's own resize + pad, boxes, renormalisation,
feature pyramids, letterbox preprocessing, and the explain pipeline with boxes."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from eigencam import EigenCAM, FeaturePyramid
from eigencam.capture.geometry import InputGeometry, crop_to_input
from eigencam.errors import ShapeError
from eigencam.models import (
    Detections,
    Preprocessing,
    RandomWeightsWarning,
    detections_of,
    load_model,
)
from eigencam.models.outputs import torchvision_detections
from eigencam.pipeline import explain_files
from eigencam.pipeline.explain import OutputOptions
from eigencam.postprocess.maps import renormalize_in_boxes, upsample
from eigencam.postprocess.placement import maps_at_original
from eigencam.runs import RunOptions
from eigencam.viz import draw_boxes


class ResizePadProbe(nn.Module):
    """A detector-like model: torchvision's resize + pad transform, then an 8x average pool.

    The 'backbone' features are the padded image itself, pooled: a bright rectangle in the
    input is a rank-1 activation whose Eigen-CAM map is exactly the rectangle's footprint.
    """

    def __init__(self, min_size: int = 64, max_size: int = 100) -> None:
        super().__init__()
        self.transform = GeneralizedRCNNTransform(
            min_size, max_size, image_mean=[0.0, 0.0, 0.0], image_std=[1.0, 1.0, 1.0]
        )
        self.backbone = nn.AvgPool2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        images, _ = self.transform(list(x))
        return self.backbone(images.tensors).mean((1, 2, 3))


def rectangle(h: int, w: int, box: tuple[int, int, int, int]) -> torch.Tensor:
    x = torch.zeros(1, 3, h, w)
    x0, y0, x1, y1 = box
    x[..., y0:y1, x0:x1] = 1.0
    return x


@pytest.mark.parametrize(
    ("size", "box"),
    [
        ((40, 100), (40, 8, 72, 24)),  # padded 64 x 128: valid 40/64 rows, 100/128 columns
        ((100, 40), (8, 40, 24, 72)),  # the transposed case: padding at the bottom
        ((50, 75), (16, 20, 48, 44)),  # resized x 1.28 to 64 x 96 (max_size 100): not a multiple
    ],
)
def test_map_is_mapped_back_through_resize_and_padding(size, box):
    model = ResizePadProbe()
    x = rectangle(*size, box)
    r = EigenCAM(model, "backbone")(x)
    truth = x[0, 0] > 0.5
    heat = r.maps[0, 0]
    # the map is high on the rectangle and low elsewhere, in input coordinates
    assert float(heat[truth].mean()) > 0.7
    assert float(heat[~truth].mean()) < 0.15
    peak = (heat > 0.5).nonzero().float()
    cy, cx = peak.mean(0).tolist()
    assert abs(cx - (box[0] + box[2]) / 2) < 3 and abs(cy - (box[1] + box[3]) / 2) < 3


def test_padding_is_cropped_before_the_decomposition():
    model = ResizePadProbe()
    x = rectangle(40, 100, (40, 8, 72, 24))
    r = EigenCAM(model, "backbone")(x)
    # padded batch 64 x 128, stride 8: 8 x 16 cells; valid 40 x 100 px -> 5 x 13 cells
    assert r.raw.shape == (1, 1, 5, 13)
    assert r.extent == pytest.approx((1.0, 104 / 100))
    # the naive map (whole padded grid stretched over the input) would be shifted
    naive = upsample(
        torch.nn.functional.avg_pool2d(torch.nn.functional.pad(x, (0, 28, 0, 24)), 8)[:, :1],
        (40, 100),
    )
    assert not torch.allclose(naive, r.maps, atol=0.1)


def test_crop_to_input_arithmetic():
    acts = torch.arange(2 * 3 * 8 * 16, dtype=torch.float32).reshape(2, 3, 8, 16)
    same, extent = crop_to_input(acts, None)
    assert same is acts and extent is None
    geo = InputGeometry(input=(40, 100), padded=(64, 128), valid=(64, 96))
    cropped, extent = crop_to_input(acts, geo)
    assert cropped.shape == (2, 3, 8, 12) and extent is None  # exact multiples: no overhang
    geo = InputGeometry(input=(40, 100), padded=(64, 128), valid=(60, 90))
    cropped, extent = crop_to_input(acts, geo)
    assert cropped.shape == (2, 3, 8, 12)
    assert extent == pytest.approx((64 / 60, 96 / 90))
    torch.testing.assert_close(cropped, acts[..., :8, :12])


def test_upsample_with_extent_crops_the_overhang():
    raw = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    full = upsample(raw, (8, 8))
    part = upsample(raw, (4, 6), extent=(2.0, 8 / 6))
    torch.testing.assert_close(part, full[..., :4, :6])


def test_renormalize_in_boxes():
    maps = torch.zeros(2, 1, 6, 8)
    maps[0, 0, 1:3, 1:4] = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    maps[0, 0, 4:6, 5:8] = 100.0 + torch.arange(6.0).reshape(2, 3)
    boxes = [torch.tensor([[1.0, 1.0, 4.0, 3.0], [5.0, 4.0, 8.0, 6.0]]), torch.zeros(0, 4)]
    out = renormalize_in_boxes(maps, boxes)
    assert out.shape == maps.shape
    torch.testing.assert_close(out[0, 0, 1:3, 1:4], (maps[0, 0, 1:3, 1:4] - 1) / 5)
    torch.testing.assert_close(out[0, 0, 4:6, 5:8], (maps[0, 0, 4:6, 5:8] - 100) / 5)
    outside = torch.ones(6, 8, dtype=torch.bool)
    outside[1:3, 1:4] = False
    outside[4:6, 5:8] = False
    assert float(out[0, 0][outside].abs().max()) == 0.0
    assert float(out[1].abs().max()) == 0.0  # no boxes: all zeros
    with pytest.raises(ValueError, match="one \\(N, 4\\) tensor per image"):
        renormalize_in_boxes(maps, boxes[:1])


def test_feature_pyramid():
    levels = {
        "0": torch.rand(2, 4, 80, 80),
        "1": torch.rand(2, 4, 40, 40),
        "2": torch.rand(2, 6, 20, 20),
        "pool": torch.rand(2, 4, 10, 10),
    }
    grid = FeaturePyramid()(levels)  # 80*80 > 4096: the 40 x 40 level's grid
    assert grid.shape == (2, 18, 40, 40)
    torch.testing.assert_close(grid[:, 4:8], levels["1"])
    assert FeaturePyramid(max_positions=10**6)(levels).shape == (2, 18, 80, 80)
    assert FeaturePyramid(levels=("2", "pool"))(levels).shape == (2, 10, 20, 20)
    assert FeaturePyramid()(list(levels.values())).shape == (2, 18, 40, 40)
    t = torch.rand(1, 3, 5, 5)
    assert FeaturePyramid()(t) is t
    with pytest.raises(ShapeError, match="feature pyramid"):
        FeaturePyramid(levels=("nope",))(levels)
    with pytest.raises(ShapeError):
        FeaturePyramid()({"a": torch.rand(2, 3, 4, 4), "b": torch.rand(3, 3, 2, 2)})


def test_letterbox_preprocessing_and_boxes_back_to_the_image():
    pre = Preprocessing((64, 64), (0.0,) * 3, (1.0,) * 3, resize="letterbox", fill=(0.5,) * 3)
    image = Image.new("RGB", (200, 100), (255, 0, 0))
    pixels = pre.resize_image(image)
    assert pixels.shape == (64, 64, 3)
    assert tuple(pixels[0, 0]) == (128, 128, 128)  # padding rows: 16 at the top
    assert tuple(pixels[32, 32]) == (255, 0, 0)
    assert pre.letterbox_layout(200, 100) == (64, 32, 0, 16)
    x0, y0, x1, y1 = pre.crop_region(200, 100)
    assert (x0, x1) == pytest.approx((0.0, 200.0)) and (y0, y1) == pytest.approx((-50, 150))
    boxes = torch.tensor([[0.0, 16.0, 64.0, 48.0], [32.0, 0.0, 48.0, 64.0]])
    back = pre.box_to_original(boxes, 200, 100)
    torch.testing.assert_close(back[0], torch.tensor([0.0, 0.0, 200.0, 100.0]))
    torch.testing.assert_close(back[1], torch.tensor([100.0, 0.0, 150.0, 100.0]))  # clipped


def test_maps_at_original_for_letterbox_is_normalised_inside_the_image():
    pre = Preprocessing((64, 64), resize="letterbox")
    raw = torch.zeros(1, 8, 8)
    raw[0, :2] = 10.0  # high in the top padding rows only
    raw[0, 3, 3] = 1.0
    maps = maps_at_original(raw, pre, (200, 100))
    assert maps.shape == (1, 100, 200)
    assert maps.max() == pytest.approx(1.0) and maps.min() == pytest.approx(0.0)


def test_detections_records_and_thresholds():
    d = Detections(
        torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 20.0, 20.0], [1.0, 2.0, 3.0, 4.0]]),
        torch.tensor([0.3, 0.9, 0.6]),
        torch.tensor([1, 2, 1]),
    )
    kept = d.above(0.5)
    assert kept.scores.tolist() == pytest.approx([0.9, 0.6]) and kept.labels.tolist() == [2, 1]
    assert len(d.above(0.5, limit=1)) == 1
    records = kept.records(["bg", "person", "car"])
    assert records[0] == {"box": [5.0, 5.0, 20.0, 20.0], "label": 2, "name": "car", "score": 0.9}
    out = [{"boxes": d.boxes, "scores": d.scores, "labels": d.labels}]
    assert len(torchvision_detections(out)[0]) == 3 and len(detections_of(out)[0]) == 3
    with pytest.raises(ShapeError, match="boxes"):
        torchvision_detections([{"boxes": d.boxes}])


def test_draw_boxes():
    image = np.zeros((40, 60, 3), np.uint8)
    out = draw_boxes(image, [[5, 5, 30, 30]], ["dog 0.90"], [3], width=2)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert out[20, 5].any() and not out[20, 20].any() and not image.any()
    with pytest.raises(ValueError, match="one caption per box"):
        draw_boxes(image, [[0, 0, 1, 1]], ["a", "b"])


@pytest.fixture(scope="module")
def small_detector():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        return load_model(
            "fasterrcnn_resnet50_fpn",
            min_size=96,
            max_size=128,
            rpn_pre_nms_top_n_test=50,
            rpn_post_nms_top_n_test=50,
            box_score_thresh=0.0,
            box_detections_per_img=5,
        )


def test_detector_entry(small_detector):
    assert small_detector.task == "detection"
    assert small_detector.preprocessing.input_size == (96, 96)
    assert small_detector.preprocessing.resize == "letterbox"
    assert small_detector.preprocessing.mean == (0.0, 0.0, 0.0)
    assert small_detector.labels[1] == "person" and len(small_detector.labels) == 91


def test_variable_input_sizes(small_detector):
    for h, w in ((64, 64), (72, 130), (130, 72), (97, 101)):
        r = EigenCAM(small_detector.model)(torch.rand(1, 3, h, w))
        assert r.maps.shape == (1, 1, h, w) and r.layer == "backbone"
        dets = small_detector.detections(r.output)
        assert len(dets) == 1 and dets[0].boxes.shape[1] == 4
        if len(dets[0]):  # boxes are in input pixels
            assert float(dets[0].boxes[:, 2].max()) <= w + 1e-3
            assert float(dets[0].boxes[:, 3].max()) <= h + 1e-3


def test_explain_files_records_and_draws_boxes(small_detector, sample_images, tmp_path):
    from eigencam.methods import EigenCAM as Cam

    report = explain_files(
        sample_images[:2],
        Cam(small_detector.model),
        small_detector.preprocessing,
        tmp_path,
        labels=small_detector.labels,
        options=OutputOptions(score_threshold=0.0, renormalize_boxes=True),
        run=RunOptions(batch_size=2),
        detections=small_detector.detections,
    )
    assert len(report.ok) == 2
    results = json.loads((tmp_path / "results.json").read_text())
    rec = results["images"][0]
    assert rec["top5"] is None and len(rec["detections"]) == 5
    first = rec["detections"][0]
    assert set(first) == {"box", "label", "name", "score"}
    x0, y0, x1, y1 = first["box"]
    assert 0 <= x0 <= x1 <= rec["width"] and 0 <= y0 <= y1 <= rec["height"]
    heat = np.load(tmp_path / f"{sample_images[0].stem}.npy")
    assert heat.shape == (rec["height"], rec["width"])
    inside = np.zeros_like(heat, dtype=bool)
    for d in rec["detections"]:
        bx0, by0, bx1, by1 = d["box"]
        # JSON boxes are rounded to 0.1 px: allow one pixel of slack at the edges
        inside[
            max(0, int(by0) - 1) : int(np.ceil(by1)) + 1,
            max(0, int(bx0) - 1) : int(np.ceil(bx1)) + 1,
        ] = True
    assert heat[~inside].max(initial=0.0) <= 1e-6  # renormalised: zero outside the boxes
    overlay = np.asarray(Image.open(tmp_path / f"{sample_images[0].stem}.png"))
    assert overlay.shape == (rec["height"], rec["width"], 3)


def test_explain_cli_on_a_detector(sample_images, tmp_path):
    from eigencam.cli.main import main

    code = main(
        [
            "explain",
            str(sample_images[0]),
            "--model",
            "fcos_resnet50_fpn",
            "--model-arg",
            "min_size=96",
            "--model-arg",
            "max_size=96",
            "--model-arg",
            "topk_candidates=20",
            "--score-threshold",
            "0",
            "--max-boxes",
            "3",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert code == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["task"] == "detection" and results["layer"] == "backbone"
    assert results["preprocessing"]["resize"] == "letterbox"
    assert len(results["images"][0]["detections"]) <= 3
