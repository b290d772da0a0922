"""``eigencam compare``: several methods side by side on the same images (the paper's figures)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from eigencam import __version__
from eigencam.cli.common import (
    Progress,
    add_batch_args,
    add_model_args,
    add_resume_args,
    comma_list,
    explainers_from_args,
    load_model_from_args,
)
from eigencam.errors import InvalidParameterError
from eigencam.io import expand_inputs
from eigencam.pipeline.compare import CompareOptions, compare_files
from eigencam.runs import RunOptions
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


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="compare methods side by side: one figure grid per image",
        description="Explain each image with several methods and write <stem>_compare.png: the "
        "image, then one overlay per method captioned with its name, under the top-3 predicted "
        "classes (Figure 3 of the Eigen-CAM paper), plus results.json with each raw map's "
        "statistics (min, max, mean, peak), layer and targets. A method that fails on an image "
        "is recorded and drawn as a grey cell; the exit code is then 1.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "images", nargs="+", metavar="IMAGE", help="image files, folders or glob patterns"
    )
    add_model_args(p)
    g = p.add_argument_group("methods")
    g.add_argument(
        "--methods",
        type=comma_list,
        default=comma_list(DEFAULT_METHODS),
        metavar="SPEC,SPEC...",
        help=f"methods in column order (default: {DEFAULT_METHODS}; list: eigencam methods)",
    )
    g.add_argument(
        "--targets",
        default="predicted",
        metavar="predicted|top<k>",
        help="class-specific methods explain the predicted class (default) or each of the top-k "
        "classes, one row per class; class-agnostic methods appear once",
    )
    g.add_argument(
        "--layer",
        default=None,
        metavar="auto|NAME",
        help="target layer for the methods that use one (default: the model's)",
    )
    o = p.add_argument_group("output")
    o.add_argument(
        "--out",
        default="eigencam-compare",
        metavar="DIR",
        help="output folder (default: %(default)s)",
    )
    o.add_argument(
        "--tile", type=int, default=224, help="longer side of each cell in pixels (default: 224)"
    )
    o.add_argument("--colormap", default="jet", help="matplotlib colormap (default: %(default)s)")
    o.add_argument(
        "--alpha", type=float, default=0.5, help="heat-map opacity (default: %(default)s)"
    )
    add_resume_args(o)
    add_batch_args(p, batch_size=4)
    p.set_defaults(run=run_compare)


def run_compare(args: argparse.Namespace) -> int:

    options = CompareOptions(
        targets=args.targets, tile=args.tile, colormap=args.colormap, alpha=args.alpha
    )

    colormap_lut(options.colormap)  # fail now on a bad colormap, not per image
    if args.batch_size < 1:
        raise InvalidParameterError(f"--batch-size must be >= 1, got {args.batch_size}")
    paths, unmatched = expand_inputs(args.images)
    loaded, pre, device = load_model_from_args(args)
    explainers = explainers_from_args(args.methods, args, loaded)
    run_info = {
        "eigencam_version": __version__,
        "command": "compare",
        "model": loaded.name,
        "weights": args.weights,
        "pretrained": loaded.pretrained,
        "layer": args.layer or loaded.target_layer,
        "preprocessing": {
            "input_size": list(pre.input_size),
            "mean": list(pre.mean),
            "std": list(pre.std),
            "resize": pre.resize,
        },
        "device": str(device),
    }
    for item, reason in unmatched:
        print(f"eigencam: {item}: {reason}", file=sys.stderr)
    progress = Progress(None, "compare", enabled=not args.quiet, min_items=2)
    run = RunOptions(
        batch_size=args.batch_size,
        workers=args.workers,
        device=device,
        resume=args.resume,
        overwrite=args.overwrite,
        max_pixels=args.max_pixels,
        progress=progress,
    )
    try:
        report = compare_files(
            paths,
            loaded.model,
            explainers,
            pre,
            args.out,
            labels=loaded.labels,
            options=options,
            run=run,
            run_info=run_info,
            extra_failures=unmatched,
        )
    finally:
        progress.close()
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
