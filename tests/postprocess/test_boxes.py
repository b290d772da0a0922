"""Maps -> masks -> connected components -> boxes -> IoU, against hand-computed cases and an
independent flood-fill reference."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch

from eigencam.errors import ShapeError
from eigencam.models.preprocessing import Preprocessing
from eigencam.postprocess import boxes as bx


def u8(rows: list[str]) -> np.ndarray:
    """A uint8 map from a picture: '.' = 0, digits d = 25 * d, '#' = 255."""
    table = {".": 0, "#": 255, **{str(d): 25 * d for d in range(10)}}
    return np.array([[table[c] for c in row] for row in rows], dtype=np.uint8)


def components(maps, thresholds=(0.5,), connectivity=8):
    return bx.connected_components(
        np.stack(maps), np.asarray(thresholds), connectivity=connectivity
    )


# -- quantize and thresholds -------------------------------------------------------------------
def test_quantize_truncates_like_uint8_casting_and_clips():
    m = np.array([[[0.0, 0.5, 1.0], [1.5, -0.2, np.nan], [0.999, 0.004, 0.0039]]])
    q = bx.quantize(m)
    assert q.dtype == np.uint8
    assert q.tolist() == [[[0, 127, 255], [255, 0, 0], [254, 1, 0]]]
    torch_q = bx.quantize(torch.tensor(m[:, :1], dtype=torch.float32))
    assert torch_q.tolist() == [[[0, 127, 255]]]
    with pytest.raises(ShapeError):
        bx.quantize(np.zeros((4, 4)))


def test_threshold_is_strictly_greater_than_tau_times_max():
    # max 200: tau 0.5 -> keep u > 100, so 100 itself is out and 101 is in.
    m = np.array([[[100, 101, 200, 0]]], dtype=np.uint8)
    c = components([m[0]], thresholds=(0.5,))
    assert c.largest[0, 0].tolist() == [1.0, 0.0, 3.0, 1.0]
    assert bx.threshold_levels(np.array([200]), np.array([0.5, 0.0, 1.0])).tolist() == [
        [101, 1, 201]
    ]


# -- components --------------------------------------------------------------------------------
def test_single_blob_box_is_pixel_edges():
    m = u8(
        [
            "......",
            ".##...",
            ".###..",
            "......",
        ]
    )
    c = components([m])
    assert c.largest[0, 0].tolist() == [1.0, 1.0, 4.0, 3.0]  # cols 1..3, rows 1..2
    assert c.largest_area[0, 0] == 5
    assert c.boxes.tolist() == [[1.0, 1.0, 4.0, 3.0]]


def test_largest_component_wins_and_all_components_are_listed():
    m = u8(
        [
            "##......",
            "##...###",
            ".....###",
            ".....###",
        ]
    )
    c = components([m])
    assert c.largest[0, 0].tolist() == [5.0, 1.0, 8.0, 4.0]
    assert c.largest_area[0, 0] == 9
    assert sorted(c.boxes.tolist()) == [[0.0, 0.0, 2.0, 2.0], [5.0, 1.0, 8.0, 4.0]]
    assert sorted(c.areas.tolist()) == [4, 9]
    assert c.owner.tolist() == [0, 0]


def test_diagonally_touching_components_merge_with_8_connectivity_only():
    m = u8(
        [
            "##....",
            "##....",
            "..##..",
            "..##..",
        ]
    )
    eight = components([m], connectivity=8)
    assert eight.largest[0, 0].tolist() == [0.0, 0.0, 4.0, 4.0]
    assert eight.boxes.shape[0] == 1
    four = components([m], connectivity=4)
    assert four.boxes.shape[0] == 2
    # Equal areas: the first component in raster order is "the largest".
    assert four.largest[0, 0].tolist() == [0.0, 0.0, 2.0, 2.0]


def test_edge_touching_components_are_one():
    m = u8(
        [
            "###...",
            "..####",
        ]
    )
    for conn in (4, 8):
        c = components([m], connectivity=conn)
        assert c.largest[0, 0].tolist() == [0.0, 0.0, 6.0, 2.0]


def test_all_zero_and_flat_maps_give_no_box():
    zero = np.zeros((5, 5), dtype=np.uint8)
    flat = np.full((5, 5), 255, dtype=np.uint8)
    c = components([zero, flat], thresholds=(0.0, 0.5))
    assert np.isnan(c.largest[0]).all()
    assert c.largest_area[0].tolist() == [0, 0]
    # A constant non-zero map is all above tau * max for tau < 1: the whole map.
    assert c.largest[1, 0].tolist() == [0.0, 0.0, 5.0, 5.0]
    assert c.owner.tolist() == [2, 3]  # masks n * T + t


def test_thresholds_shrink_the_component():
    m = u8(
        [
            "1111111",
            "1555551",
            "155#551",
            "1555551",
            "1111111",
        ]
    )
    # '1' = 25, '5' = 125, '#' = 255; the mask keeps u > tau * 255.
    c = components([m], thresholds=(0.0, 0.1, 0.2, 0.6, 0.99, 1.0))
    assert c.largest[0, :5].tolist() == [
        [0.0, 0.0, 7.0, 5.0],  # u > 0: everything
        [1.0, 1.0, 6.0, 4.0],  # u > 25.5: the 5s and the peak
        [1.0, 1.0, 6.0, 4.0],  # u > 51
        [3.0, 2.0, 4.0, 3.0],  # u > 153: the peak only
        [3.0, 2.0, 4.0, 3.0],  # u > 252.45
    ]
    assert np.isnan(c.largest[0, 5]).all()  # nothing is above the maximum


def test_stacked_masks_never_connect_across_maps_or_thresholds():
    blob = u8(["....", ".##.", ".##.", "...."])
    other = u8(["#...", "....", "....", "...#"])
    c = components([blob, other, blob], thresholds=(0.1, 0.5))
    assert c.largest[0, 0].tolist() == c.largest[2, 1].tolist() == [1.0, 1.0, 3.0, 3.0]
    assert c.largest_area[1].tolist() == [1, 1]
    assert (np.bincount(c.owner, minlength=6) == [1, 1, 2, 2, 1, 1]).all()


def flood_fill_reference(mask: np.ndarray, connectivity: int) -> list[tuple[int, list[float]]]:
    """(area, box) of each component by breadth-first search, in raster order of first pixel."""
    h, w = mask.shape
    seen = np.zeros_like(mask, dtype=bool)
    steps = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if connectivity == 8:
        steps += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    out = []
    for y in range(h):
        for x in range(w):
            if not mask[y, x] or seen[y, x]:
                continue
            seen[y, x] = True
            queue = deque([(y, x)])
            pts = []
            while queue:
                cy, cx = queue.popleft()
                pts.append((cy, cx))
                for dy, dx in steps:
                    ny, nx = cy + dy, cx + dx
                    if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        queue.append((ny, nx))
            ys = [p[0] for p in pts]
            xs = [p[1] for p in pts]
            out.append((len(pts), [min(xs), min(ys), max(xs) + 1.0, max(ys) + 1.0]))
    return out


@pytest.mark.parametrize("connectivity", [4, 8])
def test_matches_an_independent_flood_fill_on_random_maps(connectivity, monkeypatch):
    rng = np.random.default_rng(connectivity)
    low = torch.rand(6, 1, 5, 5, generator=torch.Generator().manual_seed(connectivity))
    smooth = torch.nn.functional.interpolate(low, size=(23, 19), mode="bilinear")[:, 0]
    maps = bx.quantize(((smooth - 0.2) / 0.7).numpy())
    maps[0] = rng.integers(0, 256, size=(23, 19))  # a noisy map with many components
    thresholds = np.array([0.3, 0.0, 0.8, 0.05, 0.55])  # any order
    monkeypatch.setattr(bx, "_BAND", 2)  # several bands per map, crops of different sizes
    c = bx.connected_components(maps, thresholds, connectivity=connectivity)
    for n in range(maps.shape[0]):
        peak = maps[n].max()
        for t, tau in enumerate(thresholds):
            ref = flood_fill_reference(maps[n] > tau * peak, connectivity)
            got = c.owner == n * len(thresholds) + t
            assert sorted(map(tuple, c.boxes[got].tolist())) == sorted(tuple(b) for _, b in ref)
            if ref:
                best = max(ref, key=lambda r: r[0])  # first of the largest: max keeps the first
                assert c.largest[n, t].tolist() == best[1]
                assert c.largest_area[n, t] == best[0]
            else:
                assert np.isnan(c.largest[n, t]).all()


def test_component_errors():
    with pytest.raises(TypeError, match="uint8"):
        bx.connected_components(np.zeros((1, 4, 4)), [0.5])
    with pytest.raises(ShapeError):
        bx.connected_components(np.zeros((4, 4), dtype=np.uint8), [0.5])
    with pytest.raises(ValueError, match="thresholds"):
        bx.connected_components(np.zeros((1, 4, 4), dtype=np.uint8), [])
    with pytest.raises(ValueError, match="connectivity"):
        bx.connected_components(np.zeros((1, 4, 4), dtype=np.uint8), [0.5], connectivity=6)


# -- IoU ---------------------------------------------------------------------------------------
def test_box_iou_hand_computed():
    a = np.array([0.0, 0.0, 10.0, 10.0])
    assert bx.box_iou(a, a) == 1.0
    assert bx.box_iou(a, [10.0, 0.0, 20.0, 10.0]) == 0.0  # touching edges: no overlap
    assert bx.box_iou(a, [20.0, 20.0, 30.0, 30.0]) == 0.0
    assert bx.box_iou(a, [5.0, 0.0, 15.0, 10.0]) == pytest.approx(50 / 150)
    assert bx.box_iou(a, [2.0, 2.0, 4.0, 4.0]) == pytest.approx(4 / 100)
    assert bx.box_iou(a, [np.nan] * 4) == 0.0
    assert bx.box_iou([1.0, 1.0, 1.0, 5.0], [1.0, 1.0, 1.0, 5.0]) == 0.0  # empty union
    got = bx.box_iou(np.zeros((3, 1, 4)) + a, np.stack([a, a / 2])[None])
    assert got.shape == (3, 2) and got[0].tolist() == [1.0, 0.25]
    with pytest.raises(ShapeError):
        bx.box_iou(np.zeros(3), a)


def test_best_iou_takes_any_ground_truth_box_and_ignores_padding():
    pred = np.array([[[0.0, 0.0, 10.0, 10.0], [np.nan] * 4]])
    gt = np.array([[[20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 10.0, 20.0], [np.nan] * 4]])
    assert bx.best_iou(pred, gt).tolist() == [[0.5, 0.0]]
    assert bx.best_iou(pred, np.zeros((1, 0, 4))).tolist() == [[0.0, 0.0]]


def test_best_component_iou_is_the_max_over_components_per_mask():
    boxes = np.array([[0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 10.0, 10.0], [0.0, 0.0, 1.0, 1.0]])
    owner = np.array([0, 0, 3])  # image 0 at t=0 has two components; image 1 at t=1 one
    gt = np.array([[[5.0, 5.0, 10.0, 10.0]], [[0.0, 0.0, 2.0, 2.0]]])
    out = bx.best_component_iou(boxes, owner, gt, n_thresholds=2)
    assert out.tolist() == [[1.0, 0.0], [0.0, 0.25]]


# -- coordinates -------------------------------------------------------------------------------
def test_to_original_scales_and_offsets():
    boxes = np.array([[[0.0, 0.0, 224.0, 224.0], [56.0, 112.0, 112.0, 224.0]]])
    regions = np.array([[0.0, 0.0, 448.0, 112.0]])
    out = bx.to_original(boxes, regions, (224, 224))
    assert out.tolist() == [[[0.0, 0.0, 448.0, 112.0], [112.0, 56.0, 224.0, 112.0]]]
    flat = bx.to_original(
        np.array([[10.0, 10.0, 20.0, 20.0]]), np.array([[5, 5, 15, 15]]), (20, 20)
    )
    assert flat.tolist() == [[10.0, 10.0, 15.0, 15.0]]


def test_centre_crop_maps_boxes_into_the_crop_and_clips_ground_truth():
    pre = Preprocessing((224, 224), resize="center-crop", crop_fraction=0.875)
    region = np.array([pre.crop_region(512, 256)])  # short side 256 -> crop 224 of it
    assert region.tolist() == [[144.0, 16.0, 368.0, 240.0]]
    whole_map = np.array([[[0.0, 0.0, 224.0, 224.0]]])
    assert bx.to_original(whole_map, region, (224, 224)).tolist() == [[region[0].tolist()]]
    gt = np.array([[[0.0, 0.0, 200.0, 100.0], [150.0, 20.0, 300.0, 250.0], [0, 0, 10, 10.0]]])
    clipped = bx.clip_to_region(gt, region)
    assert clipped[0, 0].tolist() == [144.0, 16.0, 200.0, 100.0]
    assert clipped[0, 1].tolist() == [150.0, 20.0, 300.0, 240.0]
    assert np.isnan(clipped[0, 2]).all()  # outside the crop: gone


def test_pad_boxes():
    out = bx.pad_boxes([np.ones((2, 4)), np.zeros((0, 4))])
    assert out.shape == (2, 2, 4)
    assert np.isnan(out[1]).all() and (out[0] == 1).all()
