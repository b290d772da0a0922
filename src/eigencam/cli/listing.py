"""``eigencam models`` and ``eigencam methods``, answered without importing torch.

What they print comes from ``listing.json`` beside this module, generated from the live
registries by :mod:`eigencam.cli.listing_build` (``python -m eigencam.cli.listing_build``); a
test checks that the file matches the registries, so the listing cannot drift from the code.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

LISTING = Path(__file__).with_name("listing.json")


def listing() -> dict[str, Any]:
    """The generated listing: ``models`` (rows), ``model_groups``, ``patterns``, ``methods``
    (one :func:`eigencam.methods.method_info` dict each) and ``methods_page`` (the markdown)."""
    return json.loads(LISTING.read_text(encoding="utf-8"))


def print_table(rows: Sequence[Sequence[Any]], header: Sequence[str], file=None) -> None:
    """A plain aligned text table."""
    file = file or sys.stdout
    cols = [list(map(str, col)) for col in zip(header, *rows)] if rows else [[h] for h in header]
    widths = [max(len(c) for c in col) for col in cols]
    for i, row in enumerate([header, *rows]):
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip(), file=file)
        if i == 0:
            print("  ".join("-" * w for w in widths), file=file)


def register(parsers: dict[str, argparse.ArgumentParser]) -> None:
    m = parsers["models"]
    m.description = (
        "List the models --model accepts: registered models (with shipped weights) first, then "
        "torchvision classifiers, detectors and segmenters (random weights unless --weights is "
        "given), and the name patterns for timm, Ultralytics YOLO, ONNX, TorchScript and your "
        "own factories."
    )
    m.epilog = "example:\n  eigencam models --json"
    m.set_defaults(run=run_models)
    m.add_argument("--json", action="store_true", help="machine-readable output")

    me = parsers["methods"]
    me.description = (
        "List every registered explanation method with a one-line description: whether it "
        "needs gradients, whether it explains a class, its cost."
    )
    me.epilog = (
        "examples:\n  eigencam methods --json\n"
        "  eigencam methods --markdown > docs/methods.md   # the docs page"
    )
    me.set_defaults(run=run_methods)
    fmt = me.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="machine-readable output")
    fmt.add_argument(
        "--markdown", action="store_true", help="the docs page (docs/methods.md) with the table"
    )


def run_models(args: argparse.Namespace) -> int:
    data = listing()
    groups = data["model_groups"]
    if args.json:
        out = [{**row, "kind": "registered"} for row in data["models"]]
        for kind, names in groups.items():
            out += [{"name": n, "kind": kind, "pretrained": False} for n in names]
        out += [{"name": p, "kind": "pattern", "description": d} for p, d in data["patterns"]]
        print(json.dumps(out, indent=2))
        return 0
    rows = [
        (
            e["name"],
            "shipped" if e["pretrained"] else "random",
            "x".join(map(str, e["input_size"])),
            e["description"],
        )
        for e in data["models"]
    ]
    print_table(rows, ("name", "weights", "input", "description"))
    for kind, names in groups.items():
        print(f"\n{kind}s (random weights unless --weights FILE):")
        width = max(len(n) for n in names) + 2
        per_line = max(1, 96 // width)
        for i in range(0, len(names), per_line):
            print("  " + "".join(n.ljust(width) for n in names[i : i + per_line]).rstrip())
    print("\nmore models, by name pattern:")
    for pattern, description in data["patterns"]:
        print(f"  {pattern:<16}{description}")
    return 0


def run_methods(args: argparse.Namespace) -> int:
    data = listing()
    infos = data["methods"]
    if args.json:
        print(json.dumps(infos, indent=2))
        return 0
    if args.markdown:
        sys.stdout.write(data["methods_page"])
        return 0
    rows = [
        (
            i["name"],
            "yes" if i["needs_gradients"] else "no",
            "yes" if i["class_specific"] else "no",
            i["summary"],
        )
        for i in infos
    ]
    print_table(rows, ("method", "gradients", "class-specific", "description"))
    print("\npapers, layer requirements and costs: eigencam methods --markdown (docs/methods.md)")
    return 0
