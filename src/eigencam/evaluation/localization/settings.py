"""What ``eigencam localize`` measures: the threshold grids and IoU rules, and the scoring of
one batch's maps into boxes and IoUs at every threshold.

Plain numpy: :func:`score_part` runs in a background thread or in the scorer processes
(``score_workers``) while the model explains the next batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from eigencam.errors import check, check_choice
from eigencam.evaluation.metrics.protocols import CHOE_GRID, CHOE_IOUS, PAPER_THRESHOLDS, union_grid
from eigencam.postprocess import boxes as bx

TOP_K = 5


@dataclass(frozen=True)
class LocalizeSettings:
    """What is measured.

    Attributes:
        thresholds: the paper protocol's threshold sweep (fractions of the map's maximum).
        box_grid: Choe et al.'s threshold grid for MaxBoxAcc / MaxBoxAccV2.
        iou_threshold: IoU for a correct box in the paper protocol and MaxBoxAcc (0.5).
        v2_ious: MaxBoxAccV2's IoU thresholds (0.3, 0.5, 0.7).
        connectivity: 8 or 4 for connected components.
    """

    thresholds: tuple[float, ...] = PAPER_THRESHOLDS
    box_grid: tuple[float, ...] = CHOE_GRID
    iou_threshold: float = 0.5
    v2_ious: tuple[float, ...] = CHOE_IOUS
    connectivity: int = 8

    def __post_init__(self) -> None:
        check(bool(self.thresholds and self.box_grid), "thresholds and box_grid must not be empty")
        check(
            0.0 < self.iou_threshold <= 1.0,
            f"iou_threshold must be in (0, 1], got {self.iou_threshold}",
        )
        check(
            bool(self.v2_ious) and all(0.0 < v <= 1.0 for v in self.v2_ious),
            f"v2_ious must be IoU thresholds in (0, 1], got {self.v2_ious}",
        )
        check_choice("connectivity", self.connectivity, (8, 4))

    @property
    def grid(self) -> tuple[float, ...]:
        """Every threshold evaluated: the union of both grids."""
        return union_grid(self.thresholds, self.box_grid)


def empty_part(m: int, t: int) -> dict[str, np.ndarray]:
    """The per-image arrays of a part with no image, for ``m`` methods and ``t`` thresholds."""
    return {
        "keys": np.zeros(0, dtype=str),
        "labels": np.zeros(0, dtype=np.int64),
        "top5": np.zeros((0, TOP_K), dtype=np.int64),
        "top5_prob": np.zeros((0, TOP_K), dtype=np.float32),
        "sizes": np.zeros((0, 2), dtype=np.int64),
        "regions": np.zeros((0, 4)),
        "boxes": np.zeros((0, m, 2, t, 4), dtype=np.float32),
        "iou": np.zeros((0, m, 2, t), dtype=np.float32),
        "iou_all": np.zeros((0, m, 2, t), dtype=np.float32),
        "gt_count": np.zeros(0, dtype=np.int64),
        "gt_flat": np.zeros((0, 4)),
    }


def score_part(
    settings: LocalizeSettings,
    stack: list[np.ndarray],
    where: list[tuple[int, int, int]],
    info: dict[str, np.ndarray],
    skipped: list[tuple[str, str]],
    methods: Sequence[str],
) -> dict[str, np.ndarray]:
    """One part of the records (``records/part-NNNNNN.npz``): a batch's boxes and IoUs.

    Args:
        settings: the grid (T thresholds) and the connectivity.
        stack: uint8 maps (n_i, H, W) at the model's input size, one array per group.
        where: for each map of the concatenated stack, (image, method, slot); slot 0 is the
            ground-truth class's map (copied to slot 1 unless a slot-1 map follows), slot 1 the
            top-1 class's map.
        info: per-image arrays (keys, labels, logits_top, logits_prob, sizes, regions, gt,
            layers); empty when every image of the batch was skipped.
        skipped: (key, reason) of the batch's skipped images.
        methods: method keys (M).
    """
    grid = np.asarray(settings.grid)
    m, t = len(methods), len(grid)
    part: dict[str, np.ndarray] = {
        "methods": np.asarray(methods, dtype=str),
        "skipped_keys": np.asarray([k for k, _ in skipped], dtype=str),
        "skipped_reasons": np.asarray([r for _, r in skipped], dtype=str),
    }
    if not stack:
        return {**part, **empty_part(m, t), "layers": np.asarray([""] * m, dtype=str)}
    n = len(info["keys"])
    regions, gt = info["regions"], info["gt"]
    maps_u8 = np.concatenate(stack)
    h, w = maps_u8.shape[-2:]
    comps = bx.connected_components(maps_u8, grid, connectivity=settings.connectivity)
    image = np.array([i for i, _, _ in where])
    largest = bx.to_original(comps.largest, regions[image], (h, w))
    iou = bx.best_iou(largest, gt[image])
    comp_boxes = bx.to_original(comps.boxes[:, None, :], regions[image[comps.owner // t]], (h, w))
    iou_all = bx.best_component_iou(comp_boxes[:, 0], comps.owner, gt[image], t)
    out_boxes = np.full((n, m, 2, t, 4), np.nan, dtype=np.float32)
    out_iou = np.zeros((n, m, 2, t), dtype=np.float32)
    out_all = np.zeros((n, m, 2, t), dtype=np.float32)
    for row, (i, mi, slot) in enumerate(where):  # slot-0 rows come before their slot-1 rows
        slots = (0, 1) if slot == 0 else (1,)
        out_boxes[i, mi, slots] = largest[row]
        out_iou[i, mi, slots] = iou[row]
        out_all[i, mi, slots] = iou_all[row]
    gt_list = [g[np.isfinite(g[:, 0])] for g in gt]
    k = info["logits_top"].shape[1]
    top5 = np.full((n, TOP_K), -1, dtype=np.int64)
    top5[:, :k] = info["logits_top"]
    prob = np.zeros((n, TOP_K), dtype=np.float32)
    prob[:, :k] = info["logits_prob"]
    return {
        **part,
        "keys": info["keys"],
        "labels": info["labels"],
        "top5": top5,
        "top5_prob": prob,
        "sizes": info["sizes"],
        "regions": regions,
        "boxes": out_boxes,
        "iou": out_iou,
        "iou_all": out_all,
        "gt_count": np.asarray([len(g) for g in gt_list], dtype=np.int64),
        "gt_flat": np.concatenate(gt_list) if gt_list else np.zeros((0, 4)),
        "layers": info["layers"],
    }
