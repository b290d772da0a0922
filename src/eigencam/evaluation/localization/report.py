"""The outputs of a localization run (:func:`write_report`), in ``out``:

- ``metrics.json``: both protocols for every method (curves, chosen thresholds, errors, the split
  into correctly / wrongly classified images), classification accuracy, settings, provenance;
- ``table.md``: the tables in the layout of the paper's Table 1 (merge runs of several models
  with ``eigencam localize-table``);
- ``per_image.csv`` (one row per image, method and threshold) and ``ground_truth.csv``: enough
  to re-score the run independently;
- ``report.html`` with ``accuracy.png`` and ``gallery/``: the best and worst cases per method,
  from the jinja2 template ``templates/report.html.j2`` (autoescaped);
- ``run.json`` and ``records/``: what ``resume`` continues from (written by the run loop).

The maths stays in :mod:`~eigencam.evaluation.metrics.protocols`; this module only formats.
Matplotlib and Pillow load when a picture is drawn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import torch

from eigencam.evaluation.benchmark import class_name, pyplot, save_figure, slug
from eigencam.evaluation.metrics.protocols import grid_columns
from eigencam.evaluation.tables import (
    fixed,
    heading,
    markdown_table,
    num,
    pct,
    write_csv,
    write_text,
)
from eigencam.io import load_image
from eigencam.io.outputs import atomic_write, write_json
from eigencam.postprocess.placement import paste_region
from eigencam.viz.grid import fit_size, resize_rgb
from eigencam.viz.overlay import draw_boxes, overlay

_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent.parent / "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)

# (title, section, field, note)
TABLES: tuple[tuple[str, str, str, str], ...] = (
    (
        "Top-1 localization error (%)",
        "paper",
        "top1_loc_error",
        "Table 1's measure: the top-1 class is right and the box reaches IoU 0.5. It cannot be "
        "lower than the top-1 classification error.",
    ),
    (
        "Class-independent localization error (%)",
        "paper",
        "class_independent_error",
        "The measure the Eigen-CAM paper reports for Eigen-CAM: the box of the map shown for the "
        "top-1 prediction, correct class or not, over all images.",
    ),
    (
        "GT-known localization error (%)",
        "paper",
        "gt_known_error",
        "The ground-truth class's map (the only map of a class-agnostic method); class ignored.",
    ),
    (
        "Top-5 localization error (%)",
        "paper",
        "top5_loc_error",
        "The right class among the top 5 and its map's box reaches IoU 0.5.",
    ),
    (
        "MaxBoxAcc (%)",
        "maxboxacc",
        "value",
        "Choe et al. 2020: BoxAcc at IoU 0.5 (largest component), best threshold.",
    ),
    (
        "MaxBoxAccV2 (%)",
        "maxboxacc_v2",
        "value",
        "Choe et al. 2020: mean over IoU 0.3 / 0.5 / 0.7 of the best BoxAcc, all components.",
    ),
)
SPLIT_HEADER = (
    "correct: GT-known",
    "correct: class-indep.",
    "wrong: GT-known",
    "wrong: class-indep.",
    "n correct / wrong",
)


def _value(method: Mapping[str, Any], section: str, key: str) -> float | None:
    sec = method.get(section, {})
    return sec.get("at_chosen", {}).get(key) if section == "paper" else sec.get(key)


def _split(method: Mapping[str, Any]) -> list[str]:
    """The cells of :data:`SPLIT_HEADER`: accuracy on correctly and wrongly classified images."""
    c, w = (method["paper"]["by_classification"][k] for k in ("correct", "wrong"))
    cells = [pct(g[k]) for g in (c, w) for k in ("gt_known_acc", "class_independent_acc")]
    return [*cells, f"{c['images']} / {w['images']}"]


def run_label(metrics: Mapping[str, Any]) -> str:
    """The column name of a run in the tables: its ``--name``, else its model."""
    return str(metrics.get("name") or metrics.get("model") or "run")


def table_markdown(runs: Sequence[Mapping[str, Any]]) -> str:
    """Tables in the layout of the paper's Table 1 (methods x models), one per measure.

    Args:
        runs: ``metrics.json`` contents of one or more runs (one column each).
    """
    labels = _unique_labels(runs)
    methods = list(dict.fromkeys(m for r in runs for m in r.get("methods", {})))
    entries = [[r.get("methods", {}).get(m) for r in runs] for m in methods]
    lines: list[str] = []
    for title, section, key, note in TABLES:
        rows = [
            [m, *("n/a" if e is None else pct(_value(e, section, key)) for e in row)]
            for m, row in zip(methods, entries)
        ]
        lines += heading(title, note) + markdown_table(["Method", *labels], rows) + [""]
    lines += heading(
        "Localization of correctly and wrongly classified images (accuracy %)",
        "GT-known: the ground-truth class's map; class-independent: the map of the top-1 "
        "(possibly wrong) prediction. n = images in the group.",
    )
    rows = [
        [m, label, *_split(e)]
        for m, row in zip(methods, entries)
        for label, e in zip(labels, row)
        if e is not None
    ]
    lines += markdown_table(["Method", "Run", *SPLIT_HEADER], rows, "llrrrrr")
    rows = []
    for label, r in zip(labels, runs):
        cls = r.get("classification", {})
        chosen = ", ".join(
            f"{m} {e['paper']['chosen_threshold']:.2f}"
            for m, e in r.get("methods", {}).items()
            if e["paper"]["chosen_threshold"] is not None
        )
        source = (r.get("calibration") or {}).get("source") or "this data (optimistic)"
        accuracy = [pct(cls.get("top1_acc")), pct(cls.get("top5_acc")), cls.get("images", 0)]
        rows.append([label, *accuracy, source, chosen])
    header = ["Run", "top-1 acc", "top-5 acc", "images", "threshold source"]
    lines += ["", *heading("Thresholds and classification")]
    lines += markdown_table([*header, "paper thresholds (per method)"], rows, "lrrrll")
    return "\n".join(lines) + "\n"


def _unique_labels(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Column names: each run's label; runs that share one are told apart by their folder's
    name (``folder``, set by ``eigencam localize-table``), else numbered."""
    labels = [run_label(r) for r in runs]
    out = []
    for label, r in zip(labels, runs):
        if labels.count(label) > 1 and r.get("folder") and r["folder"] != label:
            label = f"{label} ({r['folder']})"
        out.append(label)
    seen: dict[str, int] = {}
    for i, label in enumerate(out):
        seen[label] = seen.get(label, 0) + 1
        if out.count(label) > 1:
            out[i] = f"{label} ({seen[label]})"
    return out


# -- per-image CSV ----------------------------------------------------------------------------
CSV_COLUMNS = (
    *("file", "method", "threshold", "x0", "y0", "x1", "y1", "iou", "iou_all_components"),
    *("correct_gt_known", "correct_top1", "correct_top5", "gt_class", "pred_class", "pred_prob"),
    *("top1_map_x0", "top1_map_y0", "top1_map_x1", "top1_map_y1", "top1_map_iou"),
    "correct_class_independent",
)


def write_per_image_csv(
    path: str | Path,
    records: Any,
    methods: Sequence[str],
    grid: Sequence[float],
    thresholds: Sequence[float],
    iou_threshold: float = 0.5,
) -> Path:
    """One row per image, method and threshold (``thresholds``, a subset of the run's grid).

    ``x0..y1`` is the box of the ground-truth class's map (the only map of a class-agnostic
    method) in original image pixels, empty when the mask is empty; ``top1_map_*`` is the box of
    the top-1 predicted class's map. ``ground_truth.csv`` beside it has the ground-truth boxes.
    """
    cols = grid_columns(grid, thresholds)
    n = len(records)
    labels = records.labels
    known = labels >= 0
    top1 = records.top5[:, 0] if n else np.zeros(0, dtype=np.int64)
    correct1 = known & (top1 == labels)
    correct5 = known & (records.top5 == labels[:, None]).any(axis=1) if n else correct1

    def rows():
        for i in range(n):
            lab = int(labels[i]) if known[i] else ""
            for mi, m in enumerate(methods):
                box, top1_box = records.boxes[i, mi]
                iou, top1_iou = records.iou[i, mi]
                for c, t in zip(cols, thresholds):
                    ok = bool(iou[c] >= iou_threshold)
                    by_class = (
                        (int(ok and correct1[i]), int(ok and correct5[i])) if known[i] else ("", "")
                    )
                    row = [str(records.keys[i]), m, f"{t:g}", *(fixed(v, 1) for v in box[c])]
                    row += [f"{iou[c]:.4f}", f"{records.iou_all[i, mi, 0, c]:.4f}", int(ok)]
                    row += [*by_class, lab, int(top1[i]), f"{records.top5_prob[i, 0]:.4f}"]
                    row += [*(fixed(v, 1) for v in top1_box[c]), f"{top1_iou[c]:.4f}"]
                    yield [*row, int(bool(top1_iou[c] >= iou_threshold))]

    return write_csv(path, CSV_COLUMNS, rows())


def write_ground_truth_csv(path: str | Path, records: Any) -> Path:
    """``file, width, height, view_x0..view_y1, x0, y0, x1, y1`` per ground-truth box.

    ``view_*`` is the region of the original image the model saw; boxes are clipped to it.
    """
    header = ("file", "width", "height", "view_x0", "view_y0", "view_x1", "view_y1")
    rows = (
        (
            str(records.keys[i]),
            *(int(v) for v in records.sizes[i]),
            *(f"{v:.1f}" for v in records.regions[i]),
            *(f"{v:.2f}" for v in box),
        )
        for i in range(len(records))
        for box in records.gt[i]
    )
    return write_csv(path, (*header, "x0", "y0", "x1", "y1"), rows)


# -- plot -------------------------------------------------------------------------------------
def accuracy_plot(path: str | Path, metrics: Mapping[str, Any]) -> Path:
    """GT-known / top-1 loc accuracy against the paper's thresholds, BoxAcc over Choe's grid."""
    plt = pyplot()
    settings = metrics["settings"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (key, m) in enumerate(metrics["methods"].items()):
        color = colors[i % len(colors)]
        p = m["paper"]
        x = p["thresholds"]
        a.plot(x, _arr(p["curves"]["gt_known_acc"]), "-o", ms=3, color=color, label=key)
        a.plot(x, _arr(p["curves"]["top1_loc_acc"]), "--", color=color, alpha=0.7)
        b.plot(settings["box_grid"], _arr(m["maxboxacc"]["curve"]), "-", color=color, label=key)
    lo, hi = min(settings["thresholds"]), max(settings["thresholds"])
    b.axvspan(lo, hi, color="0.85", zorder=0, label="paper's sweep")
    a.set(
        xlabel="threshold (fraction of the map's maximum)",
        ylabel="accuracy (%)",
        title="Paper protocol: GT-known (solid), top-1 loc (dashed)",
    )
    b.set(
        xlabel="threshold (fraction of the map's maximum)",
        ylabel="BoxAcc at IoU 0.5 (%)",
        title="Choe et al.: BoxAcc over the threshold grid",
    )
    for ax in (a, b):
        ax.grid(alpha=0.3)
    b.legend(fontsize=7, loc="lower left")
    return save_figure(path, fig)


def _arr(values: Sequence[float | None]) -> np.ndarray:
    return 100.0 * np.array([np.nan if v is None else v for v in values], dtype=np.float64)


# -- gallery ----------------------------------------------------------------------------------
def select_cases(
    records: Any, metrics: Mapping[str, Any], grid: Sequence[float], per_kind: int
) -> dict[str, dict[str, list[int]]]:
    """Image indices of the best and worst cases of each method (IoU of its scored map at the
    chosen threshold; ties broken by file name)."""
    cases: dict[str, dict[str, list[int]]] = {}
    n = len(records)
    if n == 0:
        return cases
    keys = records.keys
    for mi, (key, m) in enumerate(metrics["methods"].items()):
        t = m["paper"]["chosen_threshold"]
        if t is None:
            continue
        col = int(grid_columns(grid, [t])[0])
        iou = records.iou[:, mi, 0, col].astype(np.float64)
        if m["class_specific"]:
            iou = np.where(records.labels >= 0, iou, np.nan)
        valid = np.flatnonzero(np.isfinite(iou))
        best = valid[np.lexsort((keys[valid], -iou[valid]))][:per_kind]
        worst = valid[np.lexsort((keys[valid], iou[valid]))][:per_kind]
        cases[key] = {"best": best.tolist(), "worst": worst.tolist()}
    return cases


def render_gallery(
    task: Any,
    cases: Mapping[str, Mapping[str, Sequence[int]]],
    records: Any,
    metrics: Mapping[str, Any],
    max_side: int = 320,
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Draw each case: the map over the image, ground truth in green, predicted box in red.

    The maps are recomputed for the few images shown (the run records boxes, not maps) with the
    explainers, preprocessing and device of ``task`` (the
    :class:`~eigencam.evaluation.localization.task.LocalizeTask`).

    Returns:
        {method: {"best"|"worst": [{"src", "file", "iou", "caption"}]}}; images are written to
        ``task.out/gallery/``.
    """
    samples = {s.key: s for s in task.dataset.samples}
    device, methods = task.options.device, list(metrics["methods"])
    gallery: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for key, kinds in cases.items():
        expl, mi = task.explainers[key], methods.index(key)
        t = metrics["methods"][key]["paper"]["chosen_threshold"]
        col = int(grid_columns(task.settings.grid, [t])[0])
        unique = list(dict.fromkeys(i for kind in ("best", "worst") for i in kinds.get(kind, [])))
        if not unique:
            continue
        images = [load_image(samples[str(records.keys[i])].path) for i in unique]
        x = task.pre.batch(images, device=device)
        if getattr(expl, "class_specific", False):
            lab = torch.as_tensor(records.labels[unique], device=device)
            top1 = torch.as_tensor(records.top5[unique, 0], device=device)
            maps = expl(x, targets=torch.where(lab >= 0, lab, top1)).maps[:, 0]
        else:
            maps = expl(x).maps[:, 0]
        maps = maps.detach().float().cpu()
        name = slug(key) or "method"
        for j, i in enumerate(unique):
            image = np.asarray(images[j])
            size = (image.shape[1], image.shape[0])
            heat = paste_region(maps[j][None], records.regions[i], size)[0].clamp(0, 1).numpy()
            rgb = overlay(image, heat, alpha=0.45)
            rgb = _draw_boxes(rgb, records.gt[i], records.boxes[i, mi, 0, col], max_side)
            write_jpeg(task.out / "gallery" / f"{name}-{i}.jpg", rgb)

        gallery[key] = {
            kind: [
                _case(records, i, mi, col, f"gallery/{name}-{i}.jpg", task.labels)
                for i in kinds.get(kind, [])
            ]
            for kind in ("best", "worst")
        }
    return gallery


def _case(
    records: Any, i: int, mi: int, col: int, src: str, labels: Sequence[str] | None
) -> dict[str, Any]:
    """The gallery entry of image ``i`` for method ``mi`` at threshold column ``col``."""
    iou = float(records.iou[i, mi, 0, col])
    caption = _caption(records, i, iou, labels)
    return {"src": src, "file": str(records.keys[i]), "iou": iou, "caption": caption}


def _draw_boxes(rgb: np.ndarray, gt: np.ndarray, pred: np.ndarray, max_side: int) -> np.ndarray:
    """Ground truth in green, the predicted box in red, on the image shrunk to ``max_side``."""
    scale = min(1.0, max_side / max(rgb.shape[:2]))
    if scale < 1.0:
        rgb = resize_rgb(rgb, fit_size(rgb.shape[1], rgb.shape[0], max_side))
    width = max(2, round(max(rgb.shape[:2]) / 160))
    rgb = draw_boxes(
        rgb, np.asarray(gt, np.float64).reshape(-1, 4) * scale, color=(0, 200, 0), width=width
    )
    return draw_boxes(
        rgb, np.asarray(pred, np.float64).reshape(-1, 4) * scale, color=(230, 0, 0), width=width
    )


def write_jpeg(path: str | Path, rgb: np.ndarray, quality: int = 85) -> Path:
    """Atomically write a uint8 (H, W, 3) array as JPEG."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    return atomic_write(path, lambda fh: image.save(fh, format="JPEG", quality=quality))


def _caption(records: Any, i: int, iou: float, labels: Sequence[str] | None) -> str:
    def name(c: int) -> str:
        return "?" if c < 0 else class_name(labels, c)

    gt = int(records.labels[i])
    pred = int(records.top5[i, 0])
    mark = "" if gt < 0 else (" (right)" if gt == pred else " (wrong)")
    return f"IoU {iou:.2f} · true: {name(gt)} · predicted: {name(pred)}{mark}"


# -- HTML -------------------------------------------------------------------------------------
def _short(title: str) -> str:
    """Table header: 'Top-1 localization error (%)' -> 'top-1 loc err %'."""
    t = title.replace(" localization error (%)", " loc err %").replace(" (%)", " %")
    return t.replace("Class-independent loc", "class-indep.").replace("Top-", "top-")


def _grid_text(values: Sequence[float]) -> str:
    v = [float(x) for x in values]
    if len(v) > 2:
        steps = np.diff(v)
        if np.allclose(steps, steps[0], atol=1e-9):
            return f"{v[0]:g}:{v[-1]:g}:{steps[0]:g} ({len(v)} values)"
    return ", ".join(f"{x:g}" for x in v)


def _run_rows(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    s = metrics.get("settings", {})
    p = metrics.get("preprocessing", {})
    rows = [
        ("command", "eigencam " + " ".join(str(a) for a in metrics.get("argv") or [])),
        ("eigencam", str(metrics.get("eigencam_version"))),
        ("model", f"{metrics.get('model')} (weights: {metrics.get('weights') or 'shipped'})"),
        ("device", str(metrics.get("device"))),
        ("paper thresholds", _grid_text(s.get("thresholds", []))),
        ("MaxBoxAcc grid", _grid_text(s.get("box_grid", []))),
        ("IoU", f"{s.get('iou_threshold')} (MaxBoxAccV2: {s.get('v2_ious')})"),
        ("connectivity", str(s.get("connectivity"))),
        (
            "preprocessing",
            f"{p.get('resize')} to {p.get('input_size')}, mean {p.get('mean')}, std {p.get('std')}",
        ),
    ]
    timing = metrics.get("timing") or {}
    if timing:
        rows.append(
            (
                "timing",
                f"{timing.get('images_this_call')} images in {timing.get('seconds_this_call')} s "
                f"({timing.get('images_per_second')} img/s); "
                f"{timing.get('resumed_images')} from an earlier run",
            )
        )
    return rows


def report_html(
    metrics: Mapping[str, Any],
    gallery: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]],
    plot: str | None,
) -> str:
    """A self-contained page (no scripts, no remote resources; images by relative path), from
    ``templates/report.html.j2``; every value is escaped by the template."""
    cls = metrics.get("classification", {})
    methods = [
        {
            "name": m,
            "cells": [pct(_value(e, section, key)) for _t, section, key, _n in TABLES],
            "thresholds": [
                num(e["paper"]["chosen_threshold"]),
                num(e["maxboxacc"]["threshold"]),
                "/".join(num(v) for v in e["maxboxacc_v2"]["thresholds"].values()),
            ],
            "split": _split(e),
        }
        for m, e in metrics["methods"].items()
    ]
    v2_ious = "/".join(f"{d:g}" for d in metrics.get("settings", {}).get("v2_ious", []))
    return _TEMPLATES.get_template("report.html.j2").render(
        label=run_label(metrics),
        model=metrics.get("model"),
        weights=metrics.get("weights"),
        dataset=metrics.get("dataset", {}),
        images=cls.get("images", 0),
        top1=pct(cls.get("top1_acc")),
        top5=pct(cls.get("top5_acc")),
        source=(metrics.get("calibration") or {}).get("source")
        or "chosen on this data (optimistic: no held-out calibration)",
        columns=[_short(t[0]) for t in TABLES],
        notes=[(t[0], t[3]) for t in TABLES],
        v2_ious=v2_ious,
        methods=methods,
        split_header=SPLIT_HEADER,
        plot=plot,
        gallery=gallery,
        run_rows=_run_rows(metrics),
    )


def write_report(task: Any, metrics: Mapping[str, Any], records: Any) -> None:
    """Every output file of a finished localization ``task`` (its ``out``), from its metrics and
    records (see the module docstring)."""
    out, settings, grid = task.out, task.settings, task.settings.grid
    write_json(out / "metrics.json", metrics)
    write_text(out / "table.md", table_markdown([metrics]))
    csv_grid = settings.thresholds if task.csv_thresholds == "paper" else grid
    methods, iou = list(task.explainers), settings.iou_threshold
    write_per_image_csv(out / "per_image.csv", records, methods, grid, csv_grid, iou)
    write_ground_truth_csv(out / "ground_truth.csv", records)
    plot = None
    if len(records):
        accuracy_plot(out / "accuracy.png", metrics)
        plot = "accuracy.png"
    cases = select_cases(records, metrics, grid, task.gallery) if task.gallery > 0 else {}
    shown = render_gallery(task, cases, records, metrics)
    write_text(out / "report.html", report_html(metrics, shown, plot))
