"""Paired comparison of one method with the others in an `eigencam faithfulness` run.

Faithfulness scores vary far more between images than between methods, so method means over a
few dozen images are compared on the same images: per image ``d = reference - method``, the
median difference with a percentile-bootstrap 95 % interval, the share of images where the
reference scores higher, and a two-sided Wilcoxon signed-rank p-value
(:func:`eigencam.evaluation.metrics.stats.paired_difference`). Prints a markdown table.

    python benchmarks/faithfulness_paired.py RUN_DIR [--reference eigencam]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from eigencam.evaluation.metrics.stats import paired_difference
from eigencam.runs import RunFolder

# (record key, column title, True when higher is better)
METRICS = (
    ("deletion_auc", "deletion AUC ↓", False),
    ("insertion_auc", "insertion AUC ↑", True),
    ("road_combined", "ROAD (LeRF - MoRF)/2 ↑", True),
)


def _values(rows: list[dict], method: str, metric: str) -> np.ndarray:
    out = []
    for r in rows:
        e = r["methods"].get(method) or {}
        v = None if e.get("error") else e.get(metric)
        out.append(np.nan if v is None else float(v))
    return np.asarray(out, dtype=np.float64)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="an `eigencam faithfulness` --out folder")
    p.add_argument("--reference", default="eigencam")
    args = p.parse_args(argv)
    rows = RunFolder(args.run, {}, command="faithfulness").records().rows
    if not rows:
        raise SystemExit(f"{args.run}: no finished images")
    methods = [m for m in rows[0]["methods"] if m != args.reference]
    ref = args.reference
    print(f"{len(rows)} images; per image {ref} minus the method: median [bootstrap 95 % CI], ")
    print(f"share of images where {ref} is better, Wilcoxon p\n")
    print("| Method | " + " | ".join(t for _, t, _ in METRICS) + " |")
    print("|---|" + "---:|" * len(METRICS))
    for m in methods:
        cells = []
        for key, _title, higher in METRICS:
            a, b = _values(rows, ref, key), _values(rows, m, key)
            d = paired_difference(a, b)
            if d["median_difference"] is None:
                cells.append("-")
                continue
            lo, hi = d["ci95"]
            ok = np.isfinite(a) & np.isfinite(b)
            better = float(((a - b)[ok] > 0 if higher else (a - b)[ok] < 0).mean())
            p_txt = "-" if d["wilcoxon_p"] is None else f"{d['wilcoxon_p']:.2g}"
            cells.append(
                f"{d['median_difference']:+.3f} [{lo:+.3f}, {hi:+.3f}], "
                f"{100 * better:.0f} %, p {p_txt}"
            )
        print(f"| {m} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
