"""Two-fold summary of localization runs on the two halves of a dataset.

Each of ``DIR/half1/metrics.json`` and ``DIR/half2/metrics.json`` holds numbers measured with
thresholds chosen on the *other* half (``benchmarks/localization_dev.sh``,
``benchmarks/eigencam_variants.py``). Pooling them image-weighted gives every image of the set a
score at thresholds chosen without it (two-fold cross-validation). This prints, per method:
the pooled errors / accuracies (%), and the optimistic values (thresholds chosen on the same
images) for comparison.

    python benchmarks/localization_summary.py DIR [DIR...] [--methods a,b] [--split]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COLUMNS = (
    ("top-1 loc err", "paper", "top1_loc_error"),
    ("top-5 loc err", "paper", "top5_loc_error"),
    ("GT-known err", "paper", "gt_known_error"),
    ("class-indep. err", "paper", "class_independent_error"),
    ("MaxBoxAcc", "maxboxacc", "value"),
    ("MaxBoxAccV2", "maxboxacc_v2", "value"),
)


def _value(m: dict, section: str, key: str) -> float | None:
    return m["paper"]["at_chosen"][key] if section == "paper" else m[section][key]


def _optimistic(m: dict, section: str, key: str) -> float | None:
    if section != "paper":
        return m[section]["best_on_this_data"]
    p = m["paper"]
    t = p["best_threshold_on_this_data"]
    if t is None:
        return None
    i = p["thresholds"].index(t)
    curve = {
        "top1_loc_error": "top1_loc_acc",
        "top5_loc_error": "top5_loc_acc",
        "gt_known_error": "gt_known_acc",
        "class_independent_error": "class_independent_acc",
    }[key]
    v = p["curves"][curve][i]
    return None if v is None else 1.0 - v


def pooled(runs: list[dict], method: str, section: str, key: str, fn=_value) -> float | None:
    total, weight = 0.0, 0
    for r in runs:
        m = r["methods"].get(method)
        if m is None:
            return None
        v = fn(m, section, key)
        if v is None:
            return None
        n = r["classification"]["images"]
        total += v * n
        weight += n
    return total / weight if weight else None


def split_pooled(runs: list[dict], method: str, group: str, key: str) -> tuple[float | None, int]:
    total, weight = 0.0, 0
    for r in runs:
        s = r["methods"][method]["paper"]["by_classification"][group]
        if s[key] is None:
            continue
        total += s[key] * s["images"]
        weight += s["images"]
    return (total / weight if weight else None), weight


def pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dirs", nargs="+", type=Path)
    p.add_argument("--methods", help="comma-separated subset, in this order")
    p.add_argument("--split", action="store_true", help="the correct / wrong split table too")
    args = p.parse_args(argv)
    runs: list[dict] = []
    methods: list[str] = []
    for d in args.dirs:
        for half in ("half1", "half2"):
            data = json.loads((d / half / "metrics.json").read_text())
            if data.get("calibration") is None:
                raise SystemExit(f"{d / half}: thresholds were not chosen on the other half")
            runs.append(data)
            methods += [m for m in data["methods"] if m not in methods]
    if args.methods:
        methods = args.methods.split(",")
    by_dir = [runs[i : i + 2] for i in range(0, len(runs), 2)]
    images = sum(r["classification"]["images"] for r in runs[:2])
    cls = [r["classification"] for r in runs[:2]]
    acc1 = sum(c["top1_acc"] * c["images"] for c in cls) / images
    acc5 = sum(c["top5_acc"] * c["images"] for c in cls) / images
    print(f"{images} images; top-1 accuracy {pct(acc1)} %, top-5 {pct(acc5)} %\n")
    head = "| Method | " + " | ".join(c[0] for c in COLUMNS) + " | GT-known err, optimistic |"
    print(head)
    print("|---|" + "---:|" * (len(COLUMNS) + 1))
    for m in methods:
        for pair in by_dir:
            if m not in pair[0]["methods"]:
                continue
            cells = [pct(pooled(pair, m, s, k)) for _, s, k in COLUMNS]
            opt = pct(pooled(pair, m, "paper", "gt_known_error", fn=_optimistic))
            print(f"| {m} | " + " | ".join(cells) + f" | {opt} |")
    if args.split:
        print()
        print(
            "| Method | correct: GT-known acc | correct: class-indep. acc | wrong: GT-known acc "
            "| wrong: class-indep. acc | n correct / wrong |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        for m in methods:
            for pair in by_dir:
                if m not in pair[0]["methods"]:
                    continue
                cg, nc = split_pooled(pair, m, "correct", "gt_known_acc")
                ci, _ = split_pooled(pair, m, "correct", "class_independent_acc")
                wg, nw = split_pooled(pair, m, "wrong", "gt_known_acc")
                wi, _ = split_pooled(pair, m, "wrong", "class_independent_acc")
                print(f"| {m} | {pct(cg)} | {pct(ci)} | {pct(wg)} | {pct(wi)} | {nc} / {nw} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
