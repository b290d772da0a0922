"""``eigencam attack``'s outputs: ``table.md``, ``per_image.csv`` and the figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eigencam.evaluation.attack.settings import (
    MEASURE_TITLES,
    MEASURES,
    VARIANTS,
    AttackSettings,
    variants_of,
)
from eigencam.evaluation.benchmark import failures_note, slug
from eigencam.evaluation.tables import heading, markdown_table, median_iqr, num, share
from eigencam.io.png import write_png
from eigencam.runs.folder import RunRecords
from eigencam.viz.adversarial import MethodCells, adversarial_figure


def _diff(d: Mapping[str, Any]) -> str:
    if d["median_difference"] is None:
        return "-"
    lo, hi = d["ci95"]
    return f"{d['median_difference']:+.2f} [{lo:+.2f}, {hi:+.2f}]"


_TITLES = {
    "adversarial": "Clean vs adversarial maps (class methods: clean class on the clean image, "
    "adversarial class on the adversarial image)",
    "same_class": "Clean vs adversarial maps, same class on both (the clean class)",
    "noise": "Clean vs noisy maps (Gaussian noise of the adversarial perturbation's L2 norm)",
}


def table_markdown(metrics: Mapping[str, Any]) -> str:
    """``table.md``: the attack, then one table per variant, then the paired comparisons."""
    s, a = metrics["settings"], metrics["attack"]
    pct = round(100 * s["top_fraction"])
    lines = heading(
        "DeepFool attack",
        f"candidates {s['candidates']}, overshoot {s['overshoot']}, at most {s['max_iter']} "
        "steps, in the model's input space, kept inside the valid pixel range; norms in [0, 1] "
        "pixel units over the successful attacks; rho = L2 / ||x||.",
    )
    header = ["images", "success", "L2", "Linf", "rho", "steps"]
    row = [a["images"], share(a["success"]), median_iqr(a["l2"], 3), median_iqr(a["linf"], 4)]
    row += [median_iqr(a["rho"], 4), median_iqr(a["iterations"], 0)]
    row.append(f"{share(a['clean_top1_acc'])} -> {share(a['adversarial_top1_acc'])}")
    header.append("top-1 acc clean -> adversarial")
    lines += [*markdown_table(header, [row], "r" * len(header)), ""]
    cols = [MEASURE_TITLES[m].format(pct=pct) for m in MEASURES]
    header = ["Method", *cols, "localizes (clean)", "localizes (after)", "kept", "box thr.", "n"]
    for variant in [v for v in VARIANTS if v in variants_of(s)]:
        lines += heading(
            _TITLES[variant],
            "Median [interquartile range] over the images whose attack succeeded; localizes: "
            f"the box (threshold per method below) reaches IoU {s['iou_threshold']} with a "
            "ground-truth box.",
        )
        rows = []
        for key, m in metrics["methods"].items():
            v = m.get(variant)
            if isinstance(v, str):  # one note spanning the row, its empty cells as before
                rows.append([key, f"_{v}_ |" + " |" * (len(cols) + 3)])
            elif v:
                loc = v["localization"]
                cells = [share(loc["clean"]), share(loc[variant]), share(loc["kept"])]
                cells += [f"{m['box_threshold']:.2f}", v["ssim"]["n"]]
                rows.append([key, *(median_iqr(v[x]) for x in MEASURES), *cells])
        lines += [*markdown_table(header, rows), ""]
    ref = metrics.get("reference")
    if ref and metrics.get("comparisons"):
        lines += heading(
            f"Paired comparison with {ref} (adversarial variant)",
            f"Per image: {ref}'s similarity minus the method's. Median difference [bootstrap 95% "
            f"interval], share of images where {ref}'s maps changed less, Wilcoxon signed-rank "
            "p-value.",
        )
        rows = []
        for key, c in metrics["comparisons"].items():
            sp = c["ssim"]
            more = "-" if sp["a_greater"] is None else f"{100 * sp['a_greater']:.0f}%"
            p = "-" if sp["wilcoxon_p"] is None else f"{sp['wilcoxon_p']:.1g}"
            diffs = [_diff(c["pearson"]), _diff(sp), _diff(c["top_iou"])]
            rows.append([key, *diffs, more, p, sp["n"]])
        header = ["Method", "Δ Pearson r", "Δ SSIM", "Δ top IoU"]
        header += [f"{ref} more similar (SSIM)", "p (SSIM)", "n"]
        lines += [*markdown_table(header, rows), ""]
    return "\n".join(lines + failures_note(metrics))


def per_image_table(
    records: RunRecords, methods: Sequence[str], settings: AttackSettings
) -> tuple[list[str], list[list[Any]]]:
    """``per_image.csv``: its header and one row per image and method (the failed images are
    added by :func:`~eigencam.evaluation.benchmark.write_outputs`).

    Columns: the image and its classes before and after the attack, the perturbation norms,
    then for the clean map its box and IoU with the ground truth, and for each variant the four
    similarities, its box and IoU with the ground truth.
    """
    variants = settings.variants()
    header = ["file", "method", "label", "clean_class", "clean_prob", "adv_class", "adv_prob"]
    header += ["success", "iterations", "l2", "linf", "rho", "clean_box", "clean_loc_iou"]
    for v in variants:
        header += [f"{v}_{m}" for m in MEASURES] + [f"{v}_box", f"{v}_loc_iou"]
    header.append("error")
    rows = []
    for r in records.rows:
        a, clean_c, adv_c = r["attack"], r["clean"], r["adversarial"]
        base = [r.get("label"), clean_c["class"], clean_c["prob"], adv_c["class"], adv_c["prob"]]
        base += [a["success"], a["iterations"], a["l2"], a["linf"], a["rho"]]
        for key in methods:
            m = r["methods"].get(key) or {"error": "not recorded"}
            clean = m.get("clean") or {}
            cells = [r["key"], key, *base, clean.get("box"), clean.get("loc_iou")]
            for v in variants:
                d = m.get(v) or (m.get("adversarial") if v == "same_class" else None) or {}
                cells += [d.get(x) for x in MEASURES] + [d.get("box"), d.get("loc_iou")]
            rows.append([*cells, m.get("error")])
    return header, rows


def figure_name(key: str) -> str:
    """File name of an image's figure in ``figures/`` (from its dataset key)."""
    stem = key.rsplit(".", 1)[0] if "." in key.rsplit("/", 1)[-1] else key
    return slug(stem) + ".png"


def render_figure(
    row: Mapping[str, Any],
    clean: np.ndarray,
    adversarial: np.ndarray,
    gt: np.ndarray,
    methods: Mapping[str, tuple[Any, Any, bool]],
    out_dir: Path,
    tile: int = 224,
) -> Path:
    """Draw one image's Figure-4 layout into ``out_dir/figures/``.

    Args:
        row: the image's record.
        clean, adversarial: the two (H, W, 3) uint8 images at the model's input size.
        gt: its ground-truth boxes in those pixels.
        methods: {method key: ((clean map, adversarial map), (clean box, adversarial box),
            class_specific)}.
        out_dir: the run's folder.
        tile: the cell size.
    """
    cells = []
    for key, (maps, boxes, specific) in methods.items():
        r = row["methods"][key]
        if r.get("error"):
            cells.append(MethodCells(key, None, None))
            continue
        a = r["adversarial"]
        caption = f"class: {row['clean']['name']}" if specific else "class-agnostic"
        similarity = f"SSIM {num(a['ssim'])} · r {num(a['pearson'])}"
        cells.append(
            MethodCells(key, *maps, *boxes, clean_caption=caption, adversarial_caption=similarity)
        )
    truth = f"true: {row['label_name']}" if row.get("label_name") else "true class unknown"
    att = row["attack"]
    rgb = adversarial_figure(
        clean,
        adversarial,
        gt,
        cells,
        clean_caption=f"{row['clean']['name']} {row['clean']['prob']:.2f}",
        adversarial_caption=f"{row['adversarial']['name']} {row['adversarial']['prob']:.2f}",
        adversarial_tag=row["adversarial"]["name"],
        title=[
            f"{row['key']} · {truth}",
            f"DeepFool: {row['clean']['name']} -> {row['adversarial']['name']} "
            f"({'flipped' if att['success'] else 'not flipped'}, L2 {att['l2']:.3f}, "
            f"Linf {att['linf']:.4f}, {att['iterations']} steps)",
        ],
        tile=tile,
    )
    return write_png(out_dir / "figures" / figure_name(row["key"]), rgb)
