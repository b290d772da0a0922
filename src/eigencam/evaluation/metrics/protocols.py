r"""The two weakly-supervised localization protocols, as pure functions over per-image IoUs
(docs/localization.md has both in full).

Inputs are the IoUs of :mod:`~eigencam.postprocess.boxes` for every image and threshold
fraction :math:`\tau`, so the protocols never touch a model and can re-score any saved run.

- **Paper protocol** (CAM, Grad-CAM, Eigen-CAM Table 1): the largest component's box is correct
  when :math:`\mathrm{IoU}_i \ge 0.5`; GT-known accuracy :math:`\frac1N \sum_i [\mathrm{IoU}_i
  \ge 0.5]` (the ground-truth class's map), top-1 / top-5 localization accuracy with the class
  also right (:math:`c_i`, :math:`c^5_i`), and the class-independent accuracy (the map shown for
  the top-1 prediction, class ignored). Errors are 1 - accuracy at the threshold chosen per
  method (best GT-known accuracy, first on ties), on held-out data when given.
- **Choe et al. (CVPR 2020)**: :math:`\mathrm{BoxAcc}(\tau, \delta) = \frac1N \sum_i
  [\mathrm{IoU}_i(\tau) \ge \delta]`; MaxBoxAcc :math:`= \max_\tau \mathrm{BoxAcc}(\tau, 0.5)`
  (largest component), MaxBoxAccV2 :math:`= \frac13 \sum_{\delta \in \{0.3, 0.5, 0.7\}}
  \max_\tau \mathrm{BoxAcc}_\text{all}(\tau, \delta)` (best IoU over all components).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from eigencam.errors import InvalidParameterError, ShapeError, check

PAPER_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 + 0.01 * i, 2) for i in range(11))
CHOE_GRID: tuple[float, ...] = tuple(round(0.01 * i, 2) for i in range(100))
CHOE_IOUS: tuple[float, ...] = (0.3, 0.5, 0.7)


def parse_grid(text: str) -> tuple[float, ...]:
    """Parse ``start:stop:step`` (stop included when on the grid) or ``a,b,c`` into fractions.

    Examples: ``0.05:0.15:0.01`` -> 0.05, 0.06, ..., 0.15; ``0.1,0.2`` -> 0.1, 0.2.
    """
    text = str(text).strip()
    values = _grid_values(text)
    check(
        values is not None,
        f"threshold grid {text!r} is not understood; use start:stop:step "
        "(e.g. 0.05:0.15:0.01) or a comma-separated list (e.g. 0.1,0.2,0.3)",
    )
    check(bool(values), f"threshold grid {text!r} is empty")
    bad = [v for v in values if not (0.0 <= v <= 1.0) or not math.isfinite(v)]
    check(not bad, f"thresholds are fractions of the map's maximum in [0, 1]; got {bad}")
    return tuple(sorted(set(values)))


def _grid_values(text: str) -> list[float] | None:
    """The values a grid text names, None when it does not parse."""
    try:
        parts = [float(p) for p in text.split(":" if ":" in text else ",") if p.strip()]
    except ValueError:
        return None
    if ":" not in text:
        return parts
    if len(parts) != 3 or not parts[2] > 0 or not parts[1] >= parts[0]:
        return None
    start, stop, step = parts
    count = math.floor((stop - start) / step + 1e-9) + 1
    return [round(start + i * step, 10) for i in range(count)]


def union_grid(*grids: Sequence[float]) -> tuple[float, ...]:
    """Sorted union of threshold grids (values rounded to 1e-9 to merge float twins)."""
    return tuple(sorted({round(float(v), 9) for g in grids for v in g}))


def _column(grid: Sequence[float], value: float) -> int | None:
    """Index of ``value`` in ``grid`` (to 1e-9), None when absent."""
    hit = np.flatnonzero(np.isclose(np.asarray(grid, dtype=np.float64), value, rtol=0, atol=1e-9))
    return int(hit[0]) if hit.size else None


def grid_columns(union: Sequence[float], grid: Sequence[float]) -> np.ndarray:
    """Column index in ``union`` of each threshold of ``grid``."""
    cols = [_column(union, v) for v in grid]
    missing = [v for v, c in zip(grid, cols) if c is None]
    if missing:
        raise InvalidParameterError(
            f"threshold {missing[0]} is not in the evaluated grid {list(union)}"
        )
    return np.asarray(cols, dtype=np.int64)


def box_accuracy(iou: np.ndarray, iou_threshold: float, mask: np.ndarray | None = None) -> Any:
    """Fraction of images whose IoU reaches the threshold, per column.

    Args:
        iou: (N, T) IoUs.
        iou_threshold: delta.
        mask: (N,) bool, the images that count (default all).

    Returns:
        (T,) float64 accuracies; NaN when no image counts.
    """
    iou = np.asarray(iou, dtype=np.float64)
    if iou.ndim != 2:
        raise ShapeError("iou", "(N, T)", tuple(iou.shape))
    if mask is not None:
        iou = iou[np.asarray(mask, dtype=bool)]
    if iou.shape[0] == 0:
        return np.full(iou.shape[1], np.nan)
    return (iou >= iou_threshold).mean(axis=0)


def choose_threshold(curve: Sequence[float], grid: Sequence[float]) -> float | None:
    """The threshold of the best (first on ties) finite value of an accuracy curve."""
    c = np.asarray(curve, dtype=np.float64)
    if c.size == 0 or not np.isfinite(c).any():
        return None
    return float(np.asarray(grid)[int(np.nanargmax(c))])


def _index_of(grid: Sequence[float], value: float | None) -> int | None:
    i = None if value is None else _column(grid, value)
    check(
        value is None or i is not None,
        f"the calibrated threshold {value} is not in this run's grid {list(grid)}; evaluate "
        "with the same --thresholds / --box-grid as the calibration run",
    )
    return i


def _num(x: Any) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def _list(a: np.ndarray) -> list[float | None]:
    return [_num(v) for v in np.asarray(a, dtype=np.float64)]


def paper_protocol(
    iou_gt: np.ndarray,
    iou_top1: np.ndarray,
    labels: np.ndarray,
    top5: np.ndarray,
    thresholds: Sequence[float],
    *,
    class_specific: bool,
    iou_threshold: float = 0.5,
    calibrated: float | None = None,
) -> dict[str, Any]:
    """The paper's protocol for one method.

    Args:
        iou_gt: (N, T) IoU of the ground-truth class's map box (the only map for class-agnostic
            methods) at each threshold of ``thresholds``.
        iou_top1: (N, T) IoU of the top-1 predicted class's map box.
        labels: (N,) ground-truth class index, -1 when unknown.
        top5: (N, K) predicted classes, best first (K >= 1; top-5 needs K >= 5).
        thresholds: the T threshold fractions.
        class_specific: whether the method's map depends on the class; a class-agnostic map is
            the same for every class, so GT-known needs no label.
        iou_threshold: IoU needed for a correct box (0.5).
        calibrated: threshold chosen on held-out data; None chooses on this data (optimistic).

    Returns:
        JSON-ready dict: per-threshold accuracies (``gt_known``, ``top1_loc``, ``top5_loc``,
        ``class_independent``), the chosen threshold, the errors there, and the split into
        correctly and wrongly classified images.
    """
    iou_gt = np.asarray(iou_gt, dtype=np.float64)
    iou_top1 = np.asarray(iou_top1, dtype=np.float64)
    n, t = iou_gt.shape
    if iou_top1.shape != (n, t) or len(thresholds) != t:
        raise ShapeError("iou_top1 / thresholds", f"({n}, {t}) / {t}", f"{iou_top1.shape}")
    labels = np.asarray(labels).reshape(-1)
    top5 = np.asarray(top5)
    top5 = top5.reshape(n, top5.shape[-1] if top5.ndim == 2 else 1)
    known = labels >= 0
    correct1 = known & (top5[:, 0] == labels)
    correct5 = known & (top5[:, :5] == labels[:, None]).any(axis=1)
    box_ok = iou_gt >= iou_threshold
    gt_mask = known if class_specific else np.ones(n, dtype=bool)
    gt_known = box_accuracy(iou_gt, iou_threshold, gt_mask)
    independent = box_accuracy(iou_top1, iou_threshold)
    if known.any():
        top1_loc = (box_ok & correct1[:, None])[known].mean(axis=0)
        top5_loc = (box_ok & correct5[:, None])[known].mean(axis=0)
    else:
        top1_loc = top5_loc = np.full(t, np.nan)
    basis = gt_known if np.isfinite(gt_known).any() else independent
    oracle = choose_threshold(basis, thresholds)
    chosen = calibrated if calibrated is not None else oracle
    i = _index_of(thresholds, chosen)

    def at(curve: np.ndarray) -> float | None:
        return None if i is None else _num(curve[i])

    def err(curve: np.ndarray) -> float | None:
        v = at(curve)
        return None if v is None else 1.0 - v

    split = {}
    for name, group in (("correct", correct1), ("wrong", known & ~correct1)):
        split[name] = {
            "images": int(group.sum()),
            "gt_known_acc": at(box_accuracy(iou_gt, iou_threshold, group)),
            "class_independent_acc": at(box_accuracy(iou_top1, iou_threshold, group)),
        }
    return {
        "thresholds": [float(v) for v in thresholds],
        "iou_threshold": iou_threshold,
        "curves": {
            "gt_known_acc": _list(gt_known),
            "top1_loc_acc": _list(top1_loc),
            "top5_loc_acc": _list(top5_loc),
            "class_independent_acc": _list(independent),
        },
        "chosen_threshold": chosen,
        "threshold_source": "calibration" if calibrated is not None else "this data (optimistic)",
        "best_threshold_on_this_data": oracle,
        "at_chosen": {
            "gt_known_error": err(gt_known),
            "top1_loc_error": err(top1_loc),
            "top5_loc_error": err(top5_loc),
            "class_independent_error": err(independent),
        },
        "by_classification": split,
        "images": {"all": n, "labelled": int(known.sum()), "gt_known": int(gt_mask.sum())},
    }


def maxboxacc(
    iou: np.ndarray,
    grid: Sequence[float],
    *,
    iou_threshold: float = 0.5,
    mask: np.ndarray | None = None,
    calibrated: float | None = None,
) -> dict[str, Any]:
    """MaxBoxAcc (Choe et al. 2020): best BoxAcc over thresholds, largest component, IoU 0.5.

    Args:
        iou: (N, T) largest-component IoU with the ground-truth class's map.
        grid: the T thresholds.
        iou_threshold: delta (0.5).
        mask: (N,) images that count (those with a known class for class methods).
        calibrated: threshold chosen on held-out data; None takes the maximum here.

    Returns:
        ``{"curve", "value", "threshold", "best_on_this_data", "best_threshold_on_this_data"}``.
    """
    curve = box_accuracy(iou, iou_threshold, mask)
    oracle = choose_threshold(curve, grid)
    chosen = calibrated if calibrated is not None else oracle
    i = _index_of(grid, chosen)
    return {
        "iou_threshold": iou_threshold,
        "curve": _list(curve),
        "threshold": chosen,
        "value": None if i is None else _num(curve[i]),
        "best_threshold_on_this_data": oracle,
        "best_on_this_data": None if oracle is None else _num(np.nanmax(curve)),
    }


def maxboxacc_v2(
    iou_all: np.ndarray,
    grid: Sequence[float],
    *,
    iou_thresholds: Sequence[float] = CHOE_IOUS,
    mask: np.ndarray | None = None,
    calibrated: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """MaxBoxAccV2 (Choe et al. 2020): all components, mean over IoU thresholds of the best BoxAcc.

    Args:
        iou_all: (N, T) best IoU over all components' boxes at each threshold.
        grid: the T thresholds.
        iou_thresholds: the deltas (0.3, 0.5, 0.7).
        mask: (N,) images that count.
        calibrated: ``{str(delta): threshold}`` chosen on held-out data, or None.

    Returns:
        ``{"curves": {delta: curve}, "thresholds": {delta: tau}, "per_iou": {delta: value},
        "value": mean, "best_on_this_data": mean of the maxima here,
        "best_thresholds_on_this_data": {delta: tau}}``.
    """
    per = {}
    for delta in iou_thresholds:
        key = f"{delta:g}"
        tau = None if calibrated is None else calibrated.get(key)
        check(
            calibrated is None or tau is not None,
            f"the calibration run has no MaxBoxAccV2 threshold for IoU {key}",
        )
        per[key] = maxboxacc(iou_all, grid, iou_threshold=delta, mask=mask, calibrated=tau)
    values = {k: p["value"] for k, p in per.items()}
    best = [
        np.nan if p["best_on_this_data"] is None else p["best_on_this_data"] for p in per.values()
    ]
    complete = bool(values) and None not in values.values()
    return {
        "iou_thresholds": [float(d) for d in iou_thresholds],
        "curves": {k: p["curve"] for k, p in per.items()},
        "thresholds": {k: p["threshold"] for k, p in per.items()},
        "per_iou": values,
        "value": float(np.mean(list(values.values()))) if complete else None,
        "best_on_this_data": _num(np.mean(best)) if best else None,
        "best_thresholds_on_this_data": {
            k: p["best_threshold_on_this_data"] for k, p in per.items()
        },
    }
