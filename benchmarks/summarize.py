"""Render the tables of docs/benchmarks.md from the JSON results in benchmarks/results/.

Each table in the document sits between ``<!-- table:NAME -->`` and ``<!-- /table -->``; this
script rewrites what is between the markers and leaves the prose alone, so the published
figures are always the ones in the result files.

Run:  python benchmarks/summarize.py [--doc docs/benchmarks.md] [--check]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ROOT

MARKER = re.compile(r"(<!-- table:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)
MODEL = {"resnet50": "ResNet-50", "vgg16": "VGG-16", "efficientnet_lite0": "EfficientNet-Lite0"}


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f}" if seconds < 10 else f"{seconds:,.1f} s"


def iqr(stats: dict) -> str:
    """Median with the interquartile range relative to it."""
    rel = (stats["q3"] - stats["q1"]) / stats["median"] * 100 if stats["median"] else 0.0
    return f"{ms(stats['median'])} ±{rel:.0f}%"


def table(header: list[str], rows: list[list[str]]) -> str:
    align = ["---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def environment_line(data: dict) -> str:
    env = data["environment"]
    where = env.get("gpu") or env.get("cpu", "?")
    return (
        f"*{where}, {env.get('torch_threads')} threads, torch {env.get('torch')}, "
        f"grad-cam {env.get('grad-cam')}, torchcam {env.get('torchcam')}, "
        f"captum {env.get('captum')}; `benchmarks/results/` holds the raw JSON.*\n"
    )


def overhead(data: dict) -> str:
    rows = []
    for r in data["rows"]:
        s = r["seconds"]
        mem = r.get("peak_rss_mb", {})
        rows.append(
            [
                MODEL.get(r["model"], r["model"]),
                str(r["batch"]),
                iqr(s["forward"]),
                iqr(s["eigencam"]),
                f"**{r['eigencam_over_forward']:.3f}x**",
                iqr(s["pytorch-grad-cam"]) if "pytorch-grad-cam" in s else "-",
                f"{r['peer_over_forward']:.2f}x" if "peer_over_forward" in r else "-",
                f"**{r['speedup_vs_peer']:.1f}x**" if "speedup_vs_peer" in r else "-",
                f"{r['eigencam_peak_over_forward']:.3f}x" if mem else "-",
                f"{mem['pytorch-grad-cam']['peak'] / mem['forward']['peak']:.3f}x"
                if "pytorch-grad-cam" in mem
                else "-",
            ]
        )
    header = [
        "model",
        "batch",
        "forward ms",
        "eigencam ms",
        "eigencam / forward",
        "pytorch-grad-cam ms",
        "peer / forward",
        "speed-up vs peer",
        "peak RSS eigencam / forward",
        "peak RSS peer / forward",
    ]
    return table(header, rows) + "\n" + environment_line(data)


def solvers_speed(data: dict) -> str:
    names = ["eigh", "svd", "squaring", "subspace", "auto", "pytorch-grad-cam"]
    rows = []
    for r in data["speed"]:
        s = r["seconds"]
        cells = [" x ".join(map(str, r["shape"]))]
        cells += [ms(s[n]["median"]) if n in s else "-" for n in names]
        speedup = r.get("speedup_auto_vs_peer")
        cells.append(f"**{speedup:,.0f}x**" if speedup else "-")
        rows.append(cells)
    header = ["activations (B x C x h x w)", *[f"{n} ms" for n in names], "auto vs peer"]
    return table(header, rows) + "\n" + environment_line(data)


def solvers_accuracy(data: dict) -> str:
    names = ["eigh", "svd", "squaring", "subspace", "auto"]
    rows = []
    for r in data["accuracy"]:
        rows.append(
            [
                f"`{r['layer']}`" + (" centered" if r["center"] else ""),
                str(r["images"]),
                f"{r['max_gap_ratio']:.3f}",
                *[f"{r['min_corr'][n]:.6f}" for n in names],
            ]
        )
    worst = {n: min(r["min_corr"][n] for r in data["accuracy"]) for n in names}
    rows.append(["**worst**", "", "", *[f"**{worst[n]:.6f}**" for n in names]])
    header = ["layer @ input px (C, h, w)", "images", "max σ2/σ1", *names]
    return table(header, rows)


def solver_choice(data: dict) -> str:
    names = ["eigh", "svd", "squaring", "subspace"]
    rows = []
    for r in data["solver_choice"]:
        best = min(names, key=lambda n: r["seconds"][n])
        rows.append(
            [str(r["m"])]
            + [(f"**{ms(r['seconds'][n])}**" if n == best else ms(r["seconds"][n])) for n in names]
        )
    return table(["Gram size m = min(hw, C)", *[f"{n} ms" for n in names]], rows)


def scaling(data: dict) -> str:
    rows = []
    for r in data["rows"]:
        peer = r.get("pytorch-grad-cam")
        rows.append(
            [
                r["sweep"],
                " x ".join(map(str, r["shape"])),
                ms(r["eigencam"]),
                ms(peer) if peer else "(skipped)",
                f"{peer / r['eigencam']:,.0f}x" if peer else "-",
            ]
        )
    header = ["sweep", "B x C x h x w", "eigencam ms", "pytorch-grad-cam ms", "ratio"]
    return table(header, rows) + "\n" + environment_line(data)


def throughput(data: dict) -> str:
    rows = []
    runs = data["images_per_second"]
    for name, med in data["median"].items():
        vals = runs[name]
        ratio = med / data["median"][data["floor"]]
        rows.append(
            [
                f"`{name}`" + (" (floor)" if name == data["floor"] else ""),
                f"{med:.1f}",
                f"{min(vals):.1f} - {max(vals):.1f}",
                f"{ratio:.2f}x",
            ]
        )
    header = ["variant", "images/s (median)", "range", "vs floor"]
    note = (
        f"\n*{data['images']} dev images, batch {data['args']['batch_size']}, "
        f"{data['args']['repeats']} repeats after a warm-up pass.* "
    )
    return table(header, rows) + note + environment_line(data)


def gradients(data: dict) -> str:
    rows = []
    for r in data["rows"]:
        rows.append(
            [
                MODEL.get(r["model"], r["model"]),
                "predicted class" if r["targets"] == 1 else f"top-{r['targets']} classes",
                r["method"],
                f"{r['median_s'] * 1e3:,.0f} ±{r['iqr_rel'] * 100:.0f}%",
                f"{r['time_vs_ours']:.2f}x",
                f"{r['saved_mb']:.1f}",
                f"{r['peak_mb']:.1f}" if "peak_mb" in r else "-",
            ]
        )
    header = ["model", "targets", "library", "ms", "time / ours", "autograd MB", "peak GPU MB"]
    return table(header, rows) + "\n" + environment_line(data)


def gpu(data: dict) -> str:
    rows = []
    for r in data["C_cost"]:
        s = r["seconds"]
        rows.append(
            [
                MODEL.get(r["model"], r["model"]),
                str(r["batch"]),
                iqr(s["forward"]),
                iqr(s["eigencam_nosync"]),
                f"**{r['nosync_over_forward']:.3f}x**",
                iqr(s["eigencam_checked"]),
                f"{r['checked_over_forward']:.3f}x",
                f"{r['peak_ratio']:.2f}x",
            ]
        )
    header = [
        "model",
        "batch",
        "forward ms",
        "eigencam ms (check_finite=False)",
        "/ forward",
        "eigencam ms (checked)",
        "/ forward",
        "peak GPU memory / forward",
    ]
    return table(header, rows) + "\n" + environment_line(data)


def gpu_solvers(data: dict) -> str:
    names = ["eigh", "svd", "squaring", "subspace", "auto"]
    rows = [
        [" x ".join(map(str, r["shape"])), *[f"{r['ms'][n]:.2f}" for n in names]]
        for r in data["D_solvers"]
    ]
    corr = data["A_correctness"]
    note = "\nMinimum correlation of the CUDA maps with the float64 CPU reference: " + ", ".join(
        f"{k} {v['min_corr_signed']:.6f}" for k, v in corr.items()
    )
    return table(["activations", *[f"{n} ms" for n in names]], rows) + note + ".\n"


def allocator(data: dict) -> str:
    rows = [
        [
            MODEL.get(r["model"], r["model"]),
            str(r["batch"]),
            f"`{r['layer']}`",
            f"{r['peak_mib']['forward']:,.1f}",
            f"{r['peak_mib']['eigencam']:,.1f}",
            f"**{r['ratio']:.3f}x**",
            f"{r['peak_mib']['gradcam']:,.1f}" if "gradcam" in r["peak_mib"] else "-",
            f"{r['gradcam_ratio']:.2f}x" if "gradcam_ratio" in r else "-",
        ]
        for r in data["rows"]
    ]
    header = [
        "model",
        "batch",
        "layer",
        "forward MiB",
        "Eigen-CAM MiB",
        "Eigen-CAM / forward",
        "Grad-CAM MiB",
        "Grad-CAM / forward",
    ]
    return table(header, rows) + "\n" + environment_line(data)


RENDER: dict[str, tuple[str, Callable[[dict], str]]] = {
    "overhead": ("overhead", overhead),
    "solvers-speed": ("solvers", solvers_speed),
    "solvers-accuracy": ("solvers", solvers_accuracy),
    "solver-choice": ("solvers", solver_choice),
    "scaling": ("scaling", scaling),
    "throughput": ("throughput", throughput),
    "gradients": ("gradients_cpu", gradients),
    "allocator": ("allocator", allocator),
    "gpu-cost": ("gpu_check_h200", gpu),
    "gpu-solvers": ("gpu_check_h200", gpu_solvers),
}


def render(doc: str) -> tuple[str, list[str]]:
    """Return the document with every known table re-rendered, and the tables left unrendered."""
    missing: list[str] = []

    def sub(m: re.Match) -> str:
        name = m.group("name")
        if name not in RENDER:
            missing.append(f"{name} (unknown table)")
            return m.group(0)
        source, fn = RENDER[name]
        data = load(source)
        if data is None:
            missing.append(f"{name} (no benchmarks/results/{source}.json)")
            return m.group(0)
        return m.group(1) + fn(data) + m.group(4)

    return MARKER.sub(sub, doc), missing


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--doc", default=str(ROOT / "docs" / "benchmarks.md"))
    p.add_argument("--check", action="store_true", help="exit 1 if the document is out of date")
    args = p.parse_args()
    path = Path(args.doc)
    old = path.read_text()
    new, missing = render(old)
    for m in missing:
        print(f"not rendered: {m}", file=sys.stderr)
    if args.check:
        sys.exit(int(new != old))
    path.write_text(new)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
