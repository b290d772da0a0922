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
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import nn

from eigencam.errors import check_choice
from eigencam.evaluation.datasets import Dataset
from eigencam.evaluation.localization.settings import LocalizeSettings, settings_dict
from eigencam.evaluation.localization.summary import (
    calibration_from_metrics,
    load_records,
    summarize,
)
from eigencam.evaluation.localization.task import run_localization
from eigencam.evaluation.report import (
    accuracy_plot,
    render_gallery,
    report_html,
    select_cases,
    table_markdown,
    write_ground_truth_csv,
    write_per_image_csv,
)
from eigencam.io.outputs import atomic_write, write_json
from eigencam.methods.base import Explainer
from eigencam.models.preprocessing import Preprocessing
from eigencam.runs.options import RunOptions


def localize(
    dataset: Dataset,
    model: nn.Module,
    preprocessing: Preprocessing,
    explainers: Mapping[str, Explainer],
    out_dir: str | Path,
    *,
    settings: LocalizeSettings | None = None,
    calibration: str | Path | Dataset | None = None,
    run_info: Mapping[str, Any] | None = None,
    labels: list[str] | None = None,
    run: RunOptions | None = None,
    gallery: int = 4,
    csv_thresholds: str = "paper",
    calibration_progress: Callable[[Any], None] | None = None,
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
        run: batch size (default 16), workers, device, resume/overwrite, max_pixels, progress.
        gallery: best and worst cases shown per method in ``report.html``.
        csv_thresholds: ``paper`` (the paper's sweep) or ``all`` (the whole grid) in
            ``per_image.csv``.
        calibration_progress: the progress callback of the calibration run.
        score_workers: as :func:`~eigencam.evaluation.localization.task.run_localization`.

    Returns:
        The ``metrics.json`` content.
    """
    check_choice("csv_thresholds", csv_thresholds, ("paper", "all"))
    settings = settings or LocalizeSettings()
    run = run or RunOptions(batch_size=16)
    out = Path(out_dir)
    info = dict(run_info or {})
    calib: dict[str, Any] | None = None
    calib_source = None
    if isinstance(calibration, Dataset):
        cal_metrics = localize(
            calibration,
            model,
            preprocessing,
            explainers,
            out / "calibration",
            settings=settings,
            run_info={**info, "name": f"{info.get('name') or info.get('model')} (calibration)"},
            labels=labels,
            run=replace(run, progress=calibration_progress),
            gallery=0,
            score_workers=score_workers,
        )
        calib = calibration_from_metrics(out / "calibration")
        calib_source = f"held-out: {calibration.root} ({cal_metrics['classification']['images']})"
    elif calibration is not None:
        calib = calibration_from_metrics(calibration)
        calib_source = f"held-out: thresholds of the run {calibration}"
    start = time.perf_counter()
    stats = run_localization(
        dataset,
        model,
        preprocessing,
        explainers,
        out,
        settings=settings,
        model_info={k: info.get(k) for k in ("model", "weights")},
        run=run,
        score_workers=score_workers,
    )
    methods, grid = list(explainers), settings.grid
    records = load_records(out, methods, len(grid)).restrict({s.key for s in dataset.samples})
    class_specific = {k: e.class_specific for k, e in explainers.items()}
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
            "skipped": [list(s) for s in (*dataset.skipped, *records.skipped)],
        },
        "calibration": {"source": calib_source, "thresholds": calib} if calib else None,
    }
    metrics.update(summarize(records, class_specific, settings, calib))
    metrics["timing"] = {
        "seconds_this_call": round(time.perf_counter() - start, 2),
        "images_this_call": stats.ok,
        "images_per_second": round(stats.ok / stats.seconds, 2) if stats.seconds > 0 else None,
        "resumed_images": stats.resumed,
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
    shown = render_gallery(
        out,
        cases,
        records,
        metrics,
        grid,
        explainers,
        {s.key: s for s in dataset.samples},
        preprocessing,
        device=run.device,
        labels=labels,
    )
    page = report_html(metrics, shown, plot)
    atomic_write(out / "report.html", lambda fh: fh.write(page), mode="w")
    return metrics
