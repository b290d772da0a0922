"""``localize``: run a localization benchmark end to end and write every output.

Outputs in ``out_dir``:

- ``metrics.json``: both protocols for every method (curves, chosen thresholds, errors, the split
  into correctly / wrongly classified images), classification accuracy, settings, provenance;
- ``table.md``: the tables in the layout of the paper's Table 1 (merge runs of several models
  with ``eigencam localize-table``);
- ``per_image.csv`` (one row per image, method and threshold) and ``ground_truth.csv``: enough
  to re-score the run independently;
- ``report.html`` with ``accuracy.png`` and ``gallery/``: the best and worst cases per method;
- ``run.json`` and ``records/``: what ``resume`` continues from.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from eigencam.evaluation.datasets import Dataset
from eigencam.evaluation.report import (
    accuracy_plot,
    render_gallery,
    report_html,
    select_cases,
    table_markdown,
    write_ground_truth_csv,
    write_per_image_csv,
)
from eigencam.evaluation.runner import (
    LocalizeSettings,
    RunResult,
    calibration_from_metrics,
    load_records,
    run_localization,
    settings_dict,
    summarize,
)
from eigencam.io.outputs import atomic_write, write_json
from eigencam.methods.base import Explainer
from eigencam.models.preprocessing import Preprocessing


def localize(
    dataset: Dataset,
    model: torch.nn.Module,
    preprocessing: Preprocessing,
    explainers: Mapping[str, Explainer],
    out_dir: str | Path,
    *,
    settings: LocalizeSettings | None = None,
    calibration: str | Path | Dataset | None = None,
    run_info: Mapping[str, Any] | None = None,
    labels: list[str] | None = None,
    batch_size: int = 16,
    workers: int = 2,
    device: str | torch.device = "cpu",
    resume: bool = False,
    gallery: int = 4,
    csv_thresholds: str = "paper",
    progress: Callable[[int, int], None] | None = None,
    calibration_progress: Callable[[int, int], None] | None = None,
    max_pixels: int | None = None,
    score_workers: int = 1,
) -> dict[str, Any]:
    """Evaluate every explainer as a localizer on ``dataset``; write all outputs.

    Args:
        dataset: images with ground-truth boxes (:func:`~eigencam.evaluation.open_dataset`).
        model: the classifier.
        preprocessing: the model's input preprocessing.
        explainers: {method key: explainer}, in table order.
        out_dir: output folder.
        settings: grids and IoU rules (default :class:`LocalizeSettings`).
        calibration: choose thresholds on held-out data instead of on ``dataset``: a finished run
            folder (or its ``metrics.json``), or a :class:`Dataset` evaluated first into
            ``out_dir/calibration``.
        run_info: provenance recorded in ``metrics.json`` (model name, weights, command...).
        labels: class names for captions.
        batch_size, workers, device, max_pixels, score_workers: as :func:`run_localization`.
        resume: continue a killed run in ``out_dir``.
        gallery: best and worst cases shown per method in ``report.html``.
        csv_thresholds: ``paper`` (the paper's sweep) or ``all`` (the whole grid) in
            ``per_image.csv``.
        progress, calibration_progress: progress callbacks of the two runs.

    Returns:
        The ``metrics.json`` content.
    """
    if csv_thresholds not in ("paper", "all"):
        raise ValueError(f"csv_thresholds must be 'paper' or 'all', got {csv_thresholds!r}")
    settings = settings or LocalizeSettings()
    out = Path(out_dir)
    info = dict(run_info or {})
    model_info = {k: info.get(k) for k in ("model", "weights")}
    kwargs = dict(
        settings=settings,
        model_info=model_info,
        batch_size=batch_size,
        workers=workers,
        device=device,
        resume=resume,
        score_workers=score_workers,
    )
    if max_pixels is not None:
        kwargs["max_pixels"] = max_pixels
    calib: dict[str, Any] | None = None
    calib_source = None
    if isinstance(calibration, Dataset):
        cal_dir = out / "calibration"
        cal_metrics = localize(
            calibration,
            model,
            preprocessing,
            explainers,
            cal_dir,
            settings=settings,
            run_info={**info, "name": f"{info.get('name') or info.get('model')} (calibration)"},
            labels=labels,
            gallery=0,
            progress=calibration_progress,
            **{k: v for k, v in kwargs.items() if k not in ("settings", "model_info")},
        )
        calib = calibration_from_metrics(cal_dir)
        calib_source = f"held-out: {calibration.root} ({cal_metrics['classification']['images']})"
    elif calibration is not None:
        calib = calibration_from_metrics(calibration)
        calib_source = f"held-out: thresholds of the run {calibration}"
    start = time.perf_counter()
    result: RunResult = run_localization(
        dataset, model, preprocessing, explainers, out, progress=progress, **kwargs
    )
    methods = list(explainers)
    grid = settings.grid
    records = load_records(out, methods, len(grid))
    wanted = {s.key for s in dataset.samples}
    records = _restrict(records, wanted)
    class_specific = {k: bool(getattr(e, "class_specific", False)) for k, e in explainers.items()}
    metrics: dict[str, Any] = {
        **info,
        "command": info.get("command", "localize"),
        "settings": settings_dict(settings),
        "preprocessing": preprocessing.describe(),
        "dataset": {
            "root": str(dataset.root),
            "format": dataset.format,
            "images": len(dataset.samples),
            "evaluated": len(records),
            "skipped": [list(s) for s in dataset.skipped]
            + [[k, r] for k, r in records.skipped if k in wanted],
        },
        "calibration": {"source": calib_source, "thresholds": calib} if calib else None,
    }
    metrics.update(summarize(records, class_specific, settings, calib))
    seconds = time.perf_counter() - start
    metrics["timing"] = {
        "seconds_this_call": round(seconds, 2),
        "images_this_call": result.evaluated,
        "images_per_second": round(result.evaluated / result.seconds, 2)
        if result.seconds > 0
        else None,
        "resumed_images": result.already_done,
    }
    write_json(out / "metrics.json", metrics)
    text = table_markdown([metrics])
    atomic_write(out / "table.md", lambda fh: fh.write(text), mode="w")
    csv_grid = settings.thresholds if csv_thresholds == "paper" else grid
    write_per_image_csv(
        out / "per_image.csv", records, methods, grid, csv_grid, settings.iou_threshold
    )
    write_ground_truth_csv(out / "ground_truth.csv", records)
    plot = None
    if len(records):
        accuracy_plot(out / "accuracy.png", metrics)
        plot = "accuracy.png"
    cases = select_cases(records, metrics, grid, gallery) if gallery > 0 else {}
    samples_by_key = {s.key: s for s in dataset.samples}
    shown = render_gallery(
        out,
        cases,
        records,
        metrics,
        grid,
        explainers,
        samples_by_key,
        preprocessing,
        device=device,
        labels=labels,
    )
    page = report_html(metrics, shown, plot)
    atomic_write(out / "report.html", lambda fh: fh.write(page), mode="w")
    return metrics


def _restrict(records: Any, keys: set[str]) -> Any:
    """Only the records of images in ``keys`` (a resumed run may have recorded more)."""
    import numpy as np

    from eigencam.evaluation.runner import Records

    mask = np.array([str(k) in keys for k in records.keys], dtype=bool)
    if mask.all():
        return records
    idx = np.flatnonzero(mask)
    return Records(
        keys=records.keys[idx],
        labels=records.labels[idx],
        top5=records.top5[idx],
        top5_prob=records.top5_prob[idx],
        sizes=records.sizes[idx],
        regions=records.regions[idx],
        boxes=records.boxes[idx],
        iou=records.iou[idx],
        iou_all=records.iou_all[idx],
        gt=[records.gt[i] for i in idx],
        layers=records.layers,
        skipped=[s for s in records.skipped if s[0] in keys],
    )
