"""``eigencam faithfulness``'s outputs: ``table.md``, ``per_image.csv`` and ``curves.png``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from eigencam.evaluation.benchmark import failures_note, pyplot, save_figure
from eigencam.evaluation.faithfulness.settings import METRICS
from eigencam.evaluation.tables import heading, markdown_table, median_iqr
from eigencam.runs.folder import RunRecords


def table_markdown(metrics: Mapping[str, Any]) -> str:
    """``table.md``: means, then medians [interquartile range]."""
    s = metrics["settings"]
    base = "the blurred image" if s["baseline"] == "blur" else f"the constant {s['constant']}"
    note = (
        f"{metrics['images']} images; the top-1 predicted class's probability. Deletion / "
        f"insertion: {s['steps']} steps, baseline {base}. ROAD: noisy linear imputation of "
        f"{', '.join(f'{100 * f:.0f}%' for f in s['road_fractions'])} of the pixels, mean "
        "probability over those fractions. Average drop / increase: the image multiplied by "
        "its map. ↓ lower is better, ↑ higher is better."
    )
    methods = metrics["methods"].values()
    rows = []
    for m in methods:
        means = [(m[metric]["mean"], pct) for metric, _t, _hi, pct in METRICS]
        cells = ["-" if v is None else (f"{v:.1f}" if pct else f"{v:.3f}") for v, pct in means]
        rows.append([m["title"], *cells, m["images"]])
    header = ["Method", *(t for _, t, _, _ in METRICS), "n"]
    lines = heading("Faithfulness (mean)", note) + markdown_table(header, rows) + [""]
    shown = [(k, t, p) for k, t, _h, p in METRICS if k != "increase"]
    rows = [[m["title"], *(median_iqr(m[k], 1 if p else 3) for k, _, p in shown)] for m in methods]
    lines += heading("Faithfulness (median [interquartile range])")
    lines += [*markdown_table(["Method", *(t for _, t, _ in shown)], rows), ""]
    return "\n".join(lines + failures_note(metrics))


def per_image_table(
    records: RunRecords, methods: Sequence[str]
) -> tuple[list[str], list[list[Any]]]:
    """``per_image.csv``: its header and one row per image and method, baselines included (the
    failed images are added by :func:`~eigencam.evaluation.benchmark.write_outputs`)."""
    names = [k for k, *_ in METRICS]
    header = ["file", "method", "label", "predicted", "prob", *names, "error"]
    rows = []
    for r in records.rows:
        for key in methods:
            m = r["methods"].get(key) or {"error": "not recorded"}
            head = [r["key"], key, r.get("label"), r["predicted"], r["prob"]]
            rows.append([*head, *(m.get(n) for n in names), m.get("error")])
    return header, rows


def curves_plot(path: str | Path, metrics: Mapping[str, Any]) -> Path:
    """Mean deletion, insertion and ROAD curves of every method (``curves.png``)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), dpi=100)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    panels = (
        ("deletion", "Deletion (most relevant removed first)"),
        ("insertion", "Insertion (most relevant revealed first)"),
        ("road", "ROAD: MoRF (solid), LeRF (dashed)"),
    )
    for i, (key, m) in enumerate(metrics["methods"].items()):
        style = dict(color="0.4" if m["baseline"] else colors[i % len(colors)])
        if m["baseline"]:
            style["linestyle"] = ":" if key == "random" else "-."
        for ax, (panel, _) in zip(axes, panels):
            if panel == "road":
                for c, ls in (("road_morf", "-"), ("road_lerf", "--")):
                    cur = m["curves"][c]
                    if cur["mean"] is not None:
                        st = {**style, "linestyle": style.get("linestyle", ls)}
                        ax.plot(cur["fractions"], cur["mean"], marker="o", ms=3, **st)
                continue
            cur = m["curves"][panel]
            if cur["mean"] is not None:
                ax.plot(cur["fractions"], cur["mean"], label=m["title"], **style)
    for ax, (_, title) in zip(axes, panels):
        ax.set(xlabel="fraction of pixels", ylabel="predicted class probability", title=title)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower right")
    return save_figure(path, fig)
