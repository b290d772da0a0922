"""From a localization run's records to both protocols' metrics.

The records (``records/part-NNNNNN.npz``, one per batch) hold, per image, the box and IoUs of
every method's map at every threshold; the protocols (:mod:`eigencam.evaluation.metrics.protocols`)
are computed from them alone (:func:`summarize`), so a run can be re-scored without the model.

Which map is scored:

- class-agnostic methods (Eigen-CAM): their single map, for every measure;
- class methods (``Explainer.class_specific``): the map of the ground-truth class (GT-known,
  top-1 and top-5 localization, MaxBoxAcc, MaxBoxAccV2) and the map of the top-1 predicted class
  (class-independent localization, the misclassification split). They are the same map when the
  prediction is right, and computed once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from eigencam.errors import EigenCAMError, check
from eigencam.evaluation.localization.settings import LocalizeSettings, empty_part
from eigencam.evaluation.metrics.protocols import (
    grid_columns,
    maxboxacc,
    maxboxacc_v2,
    paper_protocol,
)
from eigencam.runs.folder import RunFolder

#: The per-image arrays of :class:`Records` (besides ``keys`` and ``gt``).
_ARRAYS = ("labels", "top5", "top5_prob", "sizes", "regions", "boxes", "iou", "iou_all")


@dataclass
class Records:
    """Every recorded image of a run, concatenated (N images, M methods, T thresholds).

    Attributes:
        keys: (N,) image keys.
        labels: (N,) ground-truth class, -1 when unknown.
        top5: (N, K) predicted classes, best first; top5_prob: (N, K) their probabilities.
        sizes: (N, 2) original (width, height).
        regions: (N, 4) part of the original image the model saw.
        boxes: (N, M, 2, T, 4) largest-component box in original pixels, NaN when none; slot 0
            is the ground-truth class's map (the only map of class-agnostic methods), slot 1 the
            top-1 predicted class's map.
        iou: (N, M, 2, T) that box's best IoU with a ground-truth box.
        iou_all: (N, M, 2, T) best IoU over all components and ground-truth boxes.
        gt: list of (G_i, 4) ground-truth boxes (clipped to the region the model saw).
        layers: {method key: layer used}.
        skipped: [(key, reason)] images that could not be evaluated.
    """

    keys: np.ndarray
    labels: np.ndarray
    top5: np.ndarray
    top5_prob: np.ndarray
    sizes: np.ndarray
    regions: np.ndarray
    boxes: np.ndarray
    iou: np.ndarray
    iou_all: np.ndarray
    gt: list[np.ndarray]
    layers: dict[str, str]
    skipped: list[tuple[str, str]]

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def restrict(self, keys: set[str]) -> Records:
        """Only the records of images in ``keys`` (a resumed run may have recorded more)."""
        idx = np.flatnonzero([str(k) in keys for k in self.keys])
        return replace(
            self,
            **{name: getattr(self, name)[idx] for name in ("keys", *_ARRAYS)},
            gt=[self.gt[i] for i in idx],
            skipped=[s for s in self.skipped if s[0] in keys],
        )


def load_records(out_dir: str | Path, methods: Sequence[str], n_thresholds: int) -> Records:
    """Read and concatenate every ``records/part-*.npz`` of a run (later parts win on repeats)."""
    folder = RunFolder(out_dir, {}, command="localize", codec="npz")
    parts = []
    skipped: dict[str, str] = {}
    layers: dict[str, str] = {}
    for path in folder.parts():
        data = folder.codec.read(path)
        if list(data["methods"]) != list(methods):
            raise EigenCAMError(f"{path}: records of other methods ({list(data['methods'])})")
        skipped.update(zip(map(str, data["skipped_keys"]), map(str, data["skipped_reasons"])))
        for key, layer in zip(data["methods"], data["layers"]):
            if str(layer):
                layers.setdefault(str(key), str(layer))
        parts.append(data)
    parts = parts or [empty_part(len(methods), n_thresholds)]
    cat = {
        k: np.concatenate([p[k] for p in parts]) for k in ("keys", *_ARRAYS, "gt_count", "gt_flat")
    }
    gt = np.split(cat["gt_flat"], np.cumsum(cat["gt_count"])[:-1])
    keys = cat["keys"].astype(str)
    # Keep the last record of each image (a resumed run never repeats one, but be safe).
    _, last = np.unique(keys[::-1], return_index=True)
    keep = np.sort(len(keys) - 1 - last)
    order = keep[np.argsort(keys[keep], kind="stable")]
    for key in keys[order]:
        skipped.pop(str(key), None)
    return Records(
        keys=keys[order],
        **{name: cat[name][order] for name in _ARRAYS},
        gt=[gt[i] for i in order],
        layers=layers,
        skipped=sorted(skipped.items()),
    )


def summarize(
    records: Records,
    methods: Mapping[str, bool],
    settings: LocalizeSettings,
    calibration: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Both protocols for every method, from the records.

    Args:
        records: the run's records.
        methods: {method key: class_specific}, in table order.
        settings: the grids and IoU rules.
        calibration: {method key: {"paper": tau, "maxboxacc": tau, "maxboxacc_v2": {delta:
            tau}}} chosen on held-out data (:func:`calibration_from_metrics`), or None.

    Returns:
        {"classification": {...}, "methods": {key: {"paper": ..., "maxboxacc": ...,
        "maxboxacc_v2": ...}}}.
    """
    grid = settings.grid
    paper_cols = grid_columns(grid, settings.thresholds)
    choe_cols = grid_columns(grid, settings.box_grid)
    labels = records.labels
    known = labels >= 0
    top1 = records.top5[:, 0] if len(records) else np.zeros(0, dtype=np.int64)
    in5 = (records.top5 == labels[:, None]).any(axis=1) if len(records) else np.zeros(0, bool)
    out: dict[str, Any] = {
        "classification": {
            "images": len(records),
            "labelled": int(known.sum()),
            "top1_acc": float((top1 == labels)[known].mean()) if known.any() else None,
            "top5_acc": float(in5[known].mean()) if known.any() else None,
        },
        "methods": {},
    }
    iou, box_grid = settings.iou_threshold, settings.box_grid
    for mi, (key, class_specific) in enumerate(methods.items()):
        cal = {} if calibration is None else calibration.get(key)
        check(
            cal is not None,
            f"the calibration run has no method {key!r}; calibrate with the same --methods",
        )
        iou_gt, iou_top1 = records.iou[:, mi].astype(np.float64).transpose(1, 0, 2)
        choe_gt = iou_gt[:, choe_cols]
        choe_all = records.iou_all[:, mi, 0, choe_cols].astype(np.float64)
        mask = known if class_specific else None
        out["methods"][key] = {
            "class_specific": bool(class_specific),
            "layer": records.layers.get(key),
            "paper": paper_protocol(
                iou_gt[:, paper_cols],
                iou_top1[:, paper_cols],
                labels,
                records.top5,
                settings.thresholds,
                class_specific=class_specific,
                iou_threshold=iou,
                calibrated=cal.get("paper"),
            ),
            "maxboxacc": maxboxacc(
                choe_gt, box_grid, iou_threshold=iou, mask=mask, calibrated=cal.get("maxboxacc")
            ),
            "maxboxacc_v2": maxboxacc_v2(
                choe_all,
                box_grid,
                iou_thresholds=settings.v2_ious,
                mask=mask,
                calibrated=cal.get("maxboxacc_v2"),
            ),
        }
    return out


def calibration_from_metrics(path: str | Path) -> dict[str, dict[str, Any]]:
    """Thresholds chosen by a finished run (its folder or ``metrics.json``), per method.

    The run's own best thresholds on its data are used (``best_threshold_on_this_data``), so a
    calibration run must itself be uncalibrated or its choices are taken from its calibration.
    """
    path = Path(path)
    metrics_file = path / "metrics.json" if path.is_dir() else path
    try:
        data = json.loads(metrics_file.read_text())
        return {
            key: {
                "paper": m["paper"]["best_threshold_on_this_data"],
                "maxboxacc": m["maxboxacc"]["best_threshold_on_this_data"],
                "maxboxacc_v2": dict(m["maxboxacc_v2"]["best_thresholds_on_this_data"]),
            }
            for key, m in data["methods"].items()
        }
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise EigenCAMError(
            f"--calibrate-on {path}: not a finished `eigencam localize` run ({err})"
        ) from None
