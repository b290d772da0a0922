"""``eigencam explain`` and ``eigencam demo``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from eigencam import __version__
from eigencam.cli.common import (
    Progress,
    add_batch_args,
    add_model_args,
    add_reshape_arg,
    add_resume_args,
    comma_list,
    explainers_from_args,
    load_model_from_args,
    method_spec,
    resolve_device,
)
from eigencam.errors import InvalidParameterError
from eigencam.io import expand_inputs
from eigencam.methods import EigenCAM, Explainer, available_methods, parse_value
from eigencam.models import load_model
from eigencam.pipeline import OutputOptions, explain_files
from eigencam.runs import RunOptions
from eigencam.samples import sample_paths
from eigencam.viz import colormap_lut

EXPLAIN_EXAMPLE = """\
examples:
  eigencam explain photo.jpg
  eigencam explain photos/ 'more/*.png' --components 2 --out maps/
  eigencam explain img.jpg --model resnet50 --weights resnet50.pth --layer layer4
  eigencam explain img.jpg --method gradcam --target top3     # one map per top-3 class
  eigencam explain img.jpg --model mypkg.models:build --input-size 256 \\
      --mean 0.5 0.5 0.5 --std 0.5 0.5 0.5
  eigencam explain street.jpg --model yolov8n.yaml --weights yolov8n_state.pt
  eigencam explain street.jpg --model fasterrcnn_resnet50_fpn --renormalize-boxes
  eigencam explain img.jpg --model model.onnx --layer /layer4/layer4.1/relu_1/Relu_output_0
  eigencam explain img.jpg --model timm:vit_small_patch16_224 --weights vit_s.safetensors
"""

DEMO_EXAMPLE = """\
example:
  eigencam demo --out eigencam-demo/
"""


def add_method_args(parser: argparse.ArgumentParser) -> None:

    g = parser.add_argument_group("method")
    g.add_argument(
        "--method",
        default="eigencam",
        type=method_spec,
        metavar="NAME[:KEY=VALUE...]",
        help="explanation method and its options, e.g. eigencam:components=3:combine=energy "
        f"(default: %(default)s; one of {', '.join(available_methods())})",
    )
    g.add_argument(
        "--layer", default=None, metavar="auto|NAME", help="target layer (default: auto)"
    )
    add_reshape_arg(g)
    g.add_argument(
        "--target",
        default="predicted",
        type=target_spec,
        metavar="predicted|INDEX|top<k>",
        help="class to explain, for class-specific methods: the predicted class (default), a "
        "class index, or the k best classes (one map each)",
    )
    g.add_argument(
        "--eigen-smooth",
        action="store_true",
        help="first principal component of the weighted activations (CAM-family methods)",
    )
    g.add_argument(
        "--components",
        type=int,
        default=1,
        metavar="K",
        help="principal components per image (eigencam)",
    )
    g.add_argument(
        "--center",
        action="store_true",
        help="subtract channel means first (PCA, as pytorch-grad-cam)",
    )
    g.add_argument(
        "--solver",
        default="auto",
        choices=["auto", "eigh", "svd", "squaring", "subspace"],
        help="eigen-solver (all exact; default: %(default)s)",
    )


def add_output_args(parser: argparse.ArgumentParser, default_out: str) -> None:
    g = parser.add_argument_group("output")
    g.add_argument(
        "--out", default=default_out, metavar="DIR", help="output folder (default: %(default)s)"
    )
    g.add_argument(
        "--save",
        type=comma_list,
        default=["overlay", "npy"],
        metavar="overlay,npy",
        help="per-image files to write (default: overlay,npy)",
    )
    g.add_argument("--colormap", default="jet", help="matplotlib colormap (default: %(default)s)")
    g.add_argument(
        "--alpha", type=float, default=0.5, help="heat-map opacity (default: %(default)s)"
    )
    g.add_argument("--caption", action="store_true", help="caption overlays with the top-3 classes")
    add_resume_args(g)
    d = parser.add_argument_group("detectors")
    d.add_argument(
        "--score-threshold",
        type=float,
        default=0.5,
        metavar="S",
        help="record and draw the boxes scoring at least S (default: %(default)s)",
    )
    d.add_argument("--max-boxes", type=int, default=100, help="at most this many boxes per image")
    d.add_argument("--no-boxes", action="store_true", help="do not draw the boxes on overlays")
    d.add_argument(
        "--renormalize-boxes",
        action="store_true",
        help="normalise the map inside each box on its own and zero it outside the boxes",
    )


def target_spec(value: str) -> str | int:
    """``--target``: ``predicted``, a class index or ``top<k>`` (read as spec values are)."""
    value = value.strip()
    parsed = parse_value(value)
    if value == "predicted":
        return value
    if isinstance(parsed, int) and not isinstance(parsed, bool) and parsed >= 0:
        return parsed
    if value.startswith("top") and value[3:].isdigit() and int(value[3:]) >= 1:
        return value
    raise argparse.ArgumentTypeError(
        f"expected 'predicted', a class index or 'top<k>' (e.g. top3), got {value!r}"
    )


def explainer_targets(args: argparse.Namespace, cls: Any) -> Any:
    """The ``targets`` to pass to the explainer for ``--target`` (None: the method's default)."""
    target = getattr(args, "target", "predicted")
    if target == "predicted":
        return None
    if not cls.class_specific:
        raise InvalidParameterError(
            f"--target applies to class-specific methods; {cls.name} is class-agnostic (see "
            "eigencam methods)"
        )
    return target


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain",
        help="explain images: overlays, maps (.npy) and results.json",
        description="Compute class activation maps for images (files, folders, globs) and write "
        "<stem>.png (overlay, original resolution), <stem>.npy (float32 map in [0, 1]) and "
        "results.json (layer, explained variance, top-5 classes, errors).",
        epilog=EXPLAIN_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "images", nargs="+", metavar="IMAGE", help="image files, folders or glob patterns"
    )
    add_model_args(p)
    add_method_args(p)
    add_output_args(p, "eigencam-out")
    add_batch_args(p)
    p.set_defaults(run=run_explain)

    d = sub.add_parser(
        "demo",
        help="explain the bundled sample photos with the embedded EfficientNet-Lite0",
        description="Run Eigen-CAM with the embedded EfficientNet-Lite0 (real ImageNet weights) on "
        "the bundled sample photos and write captioned overlays. Works offline.",
        epilog=DEMO_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument(
        "--out", default="eigencam-demo", metavar="DIR", help="output folder (default: %(default)s)"
    )
    d.add_argument(
        "--components", type=int, default=1, metavar="K", help="principal components per image"
    )
    d.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(run=run_demo)


def build_explainer(args: argparse.Namespace, loaded: Any) -> Explainer:
    """The explainer of ``--method`` (a spec: ``eigencam:components=3:combine=energy``)."""
    return next(iter(explainers_from_args([args.method], args, loaded).values()))


def run_explain(args: argparse.Namespace) -> int:

    paths, unmatched = expand_inputs(args.images)
    options = OutputOptions(
        save=tuple(args.save),
        colormap=args.colormap,
        alpha=args.alpha,
        caption=args.caption,
        score_threshold=args.score_threshold,
        max_boxes=args.max_boxes,
        draw_boxes=not args.no_boxes,
        renormalize_boxes=args.renormalize_boxes,
    )
    if "overlay" in options.save:
        colormap_lut(options.colormap)  # fail now on a bad colormap, not per image
    if args.batch_size < 1:
        raise InvalidParameterError(f"--batch-size must be >= 1, got {args.batch_size}")
    loaded, pre, device = load_model_from_args(args)
    explainer = build_explainer(args, loaded)
    targets = explainer_targets(args, type(explainer))
    run_info = {
        "eigencam_version": __version__,
        "command": "explain",
        "model": loaded.name,
        "weights": args.weights,
        "pretrained": loaded.pretrained,
        "task": loaded.task,
        "method": args.method,
        "params": {
            "layer": args.layer or loaded.target_layer,
            "reshape": args.reshape,
            "components": args.components,
            "center": args.center,
            "solver": args.solver,
            "target": args.target,
            "eigen_smooth": args.eigen_smooth,
            "score_threshold": args.score_threshold if loaded.detections else None,
            "renormalize_boxes": args.renormalize_boxes if loaded.detections else None,
        },
        "preprocessing": {
            "input_size": list(pre.input_size),
            "mean": list(pre.mean),
            "std": list(pre.std),
            "resize": pre.resize,
        },
        "device": str(device),
    }
    return _run(paths, unmatched, explainer, loaded, pre, device, options, args, run_info, targets)


def _run(
    paths, unmatched, explainer, loaded, pre, device, options, args, run_info, targets=None
) -> int:

    for item, reason in unmatched:
        print(f"eigencam: {item}: {reason}", file=sys.stderr)
    progress = Progress(None, args.command, enabled=not args.quiet)
    run = RunOptions(
        batch_size=getattr(args, "batch_size", 8),
        workers=getattr(args, "workers", 2),
        device=device,
        resume=getattr(args, "resume", False),
        overwrite=getattr(args, "overwrite", False) or args.command == "demo",
        max_pixels=getattr(args, "max_pixels", None),
        progress=progress,
    )
    try:
        report = explain_files(
            paths,
            explainer,
            pre,
            args.out,
            labels=loaded.labels,
            options=options,
            run=run,
            run_info=run_info,
            extra_failures=unmatched,
            targets=targets,
            detections=getattr(loaded, "detections", None),
        )
    finally:
        progress.close()
    for rec in report.failed:
        if (rec["file"], rec["error"]) not in {(i, r) for i, r in unmatched}:
            print(f"eigencam: {rec['file']}: {rec['error']}", file=sys.stderr)
    n_ok, n_bad = len(report.ok), len(report.failed)
    rate = n_ok / report.seconds if report.seconds > 0 else 0.0
    print(
        f"{n_ok} image(s) explained, {n_bad} failed, {rate:.1f} img/s -> "
        f"{Path(args.out) / 'results.json'}"
    )
    return 1 if n_bad or not paths else 0


def run_demo(args: argparse.Namespace) -> int:

    device = resolve_device(args.device)
    loaded = load_model(device=device)
    explainer = EigenCAM(loaded.model, loaded.target_layer, n_components=args.components)
    options = OutputOptions(caption=True)
    run_info = {
        "eigencam_version": __version__,
        "command": "demo",
        "model": loaded.name,
        "method": "eigencam",
        "params": {"components": args.components},
        "device": str(device),
    }
    args.batch_size, args.workers = 4, 2
    code = _run(
        sample_paths(), [], explainer, loaded, loaded.preprocessing, device, options, args, run_info
    )
    print(f"open the overlays in {args.out}/ (captions: top-3 ImageNet classes)")
    return code
