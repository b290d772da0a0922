"""``eigencam compare``: several methods side by side on the same images (the paper's figures)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from eigencam.cli import args as cli_args
from eigencam.cli import common
from eigencam.errors import check_range
from eigencam.io import expand_inputs
from eigencam.pipeline.compare import CompareOptions, compare_files
from eigencam.viz import colormap_lut

DEFAULT_METHODS = "eigencam,gradcam,gradcampp,cnnfixations"

EXAMPLE = """\
examples:
  eigencam compare photo.jpg                                   # eigencam, gradcam, gradcampp,
                                                               # cnnfixations on the embedded model
  eigencam compare photos/ --methods eigencam,cam,gradcam,saliency,cmwp --out figs/
  eigencam compare dogsled.jpg --model vgg16 --weights vgg16.pth --targets top3
      # class-specific methods once per top-3 class: inspect a misclassified image
"""


def register(parsers: dict[str, argparse.ArgumentParser]) -> None:
    p = cli_args.command(
        parsers,
        "compare",
        "Explain each image with several methods and write <stem>_compare.png: the image, then "
        "one overlay per method captioned with its name, under the top-3 predicted classes "
        "(Figure 3 of the Eigen-CAM paper), plus results.json with each raw map's statistics "
        "(min, max, mean, peak), layer and targets. A method that fails on an image is recorded "
        "and drawn as a grey cell; the exit code is then 1.",
        EXAMPLE,
        run_compare,
    )
    cli_args.add_images_arg(p)
    cli_args.add_model_args(p)
    g = cli_args.add_methods_args(p, DEFAULT_METHODS, ", in column order")
    g.add_argument(
        "--targets",
        default="predicted",
        metavar="predicted|top<k>",
        help="class-specific methods explain the predicted class (default) or each of the top-k "
        "classes, one row per class; class-agnostic methods appear once",
    )
    o, _ = cli_args.add_run_args(p, "eigencam-compare", 4)
    cli_args.option(o, "--tile", 224, "longer side of each cell in pixels")
    cli_args.option(o, "--colormap", "jet", "matplotlib colormap")
    cli_args.option(o, "--alpha", 0.5, "heat-map opacity")


def run_compare(args: argparse.Namespace) -> int:
    options = CompareOptions(
        targets=args.targets, tile=args.tile, colormap=args.colormap, alpha=args.alpha
    )
    colormap_lut(options.colormap)  # fail now on a bad colormap, not per image
    check_range("--batch-size", args.batch_size, 1)
    paths, unmatched = expand_inputs(args.images)
    loaded, pre, device = common.load_model_from_args(args)
    explainers = common.explainers_from_args(args.methods, args, loaded)
    layer = args.layer or loaded.target_layer
    info = common.run_info(
        args, loaded, device, layer=layer, preprocessing=common.preprocessing_info(pre)
    )
    for item, reason in unmatched:
        print(f"eigencam: {item}: {reason}", file=sys.stderr)
    with common.Progress(None, "compare", enabled=not args.quiet, min_items=2) as progress:
        report = compare_files(
            paths,
            loaded.model,
            explainers,
            pre,
            args.out,
            labels=loaded.labels,
            options=options,
            run=common.run_options(args, device, progress),
            run_info=info,
            extra_failures=unmatched,
        )
    reported = {(i, r) for i, r in unmatched}
    for rec in report.failed:
        if (rec["file"], rec["error"]) in reported:
            continue
        print(f"eigencam: {rec['file']}: {rec['error']}", file=sys.stderr)
        for name, m in (rec.get("methods") or {}).items():
            if m["status"] != "ok":
                print(f"  {name}: {m['error']}", file=sys.stderr)
    n_ok, n_bad = len(report.ok), len(report.failed)
    print(f"{n_ok} figure(s) complete, {n_bad} with failures -> {Path(args.out) / 'results.json'}")
    return 1 if n_bad or not paths else 0
