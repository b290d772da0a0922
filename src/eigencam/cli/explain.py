"""``eigencam explain`` and ``eigencam demo``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from eigencam import __version__
from eigencam.cli import args as cli_args
from eigencam.cli import common
from eigencam.errors import InvalidParameterError, check_range
from eigencam.io import expand_inputs
from eigencam.methods import EigenCAM
from eigencam.models import load_model
from eigencam.pipeline import OutputOptions, explain_files
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


def register(parsers: dict[str, argparse.ArgumentParser]) -> None:
    p = cli_args.command(
        parsers,
        "explain",
        "Compute class activation maps for images (files, folders, globs) and write "
        "<stem>.png (overlay, original resolution), <stem>.npy (float32 map in [0, 1]) and "
        "results.json (layer, explained variance, top-5 classes, errors).",
        EXPLAIN_EXAMPLE,
        run_explain,
    )
    cli_args.add_images_arg(p)
    cli_args.add_model_args(p)
    cli_args.add_method_args(p)
    g, _ = cli_args.add_run_args(p, "eigencam-out", 8)
    g.add_argument(
        "--save",
        type=cli_args.comma_list,
        default=["overlay", "npy"],
        metavar="overlay,npy",
        help="per-image files to write (default: overlay,npy)",
    )
    cli_args.option(g, "--colormap", "jet", "matplotlib colormap")
    cli_args.option(g, "--alpha", 0.5, "heat-map opacity")
    g.add_argument("--caption", action="store_true", help="caption overlays with the top-3 classes")
    d = p.add_argument_group("detectors")
    cli_args.option(
        d, "--score-threshold", 0.5, "record and draw the boxes scoring at least S", metavar="S"
    )
    d.add_argument("--max-boxes", type=int, default=100, help="at most this many boxes per image")
    d.add_argument("--no-boxes", action="store_true", help="do not draw the boxes on overlays")
    d.add_argument(
        "--renormalize-boxes",
        action="store_true",
        help="normalise the map inside each box on its own and zero it outside the boxes",
    )

    d = cli_args.command(
        parsers,
        "demo",
        "Run Eigen-CAM with the embedded EfficientNet-Lite0 (real ImageNet weights) on the "
        "bundled sample photos and write captioned overlays. Works offline.",
        DEMO_EXAMPLE,
        run_demo,
    )
    cli_args.option(d, "--out", "eigencam-demo", "output folder", metavar="DIR")
    d.add_argument(
        "--components", type=int, default=1, metavar="K", help="principal components per image"
    )
    d.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    # The run options of a demo: always a fresh folder.
    d.set_defaults(batch_size=4, workers=2, resume=False, overwrite=True, max_pixels=None)


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
    check_range("--batch-size", args.batch_size, 1)
    loaded, pre, device = common.load_model_from_args(args)
    explainer = next(iter(common.explainers_from_args([args.method], args, loaded).values()))
    targets = explainer_targets(args, type(explainer))
    detects = loaded.detections
    params = {
        "layer": args.layer or loaded.target_layer,
        "reshape": args.reshape,
        "components": args.components,
        "center": args.center,
        "solver": args.solver,
        "target": args.target,
        "eigen_smooth": args.eigen_smooth,
        "score_threshold": args.score_threshold if detects else None,
        "renormalize_boxes": args.renormalize_boxes if detects else None,
    }
    info = common.run_info(
        args,
        loaded,
        device,
        task=loaded.task,
        method=args.method,
        params=params,
        preprocessing=common.preprocessing_info(pre),
    )
    return _run(paths, unmatched, explainer, loaded, pre, device, options, args, info, targets)


def _run(
    paths, unmatched, explainer, loaded, pre, device, options, args, info, targets=None
) -> int:
    """Explain ``paths`` into ``--out`` and report; the exit code (1 when some image failed)."""
    for item, reason in unmatched:
        print(f"eigencam: {item}: {reason}", file=sys.stderr)
    with common.Progress(None, args.command, enabled=not args.quiet) as progress:
        report = explain_files(
            paths,
            explainer,
            pre,
            args.out,
            labels=loaded.labels,
            options=options,
            run=common.run_options(args, device, progress),
            run_info=info,
            extra_failures=unmatched,
            targets=targets,
            detections=getattr(loaded, "detections", None),
        )
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
    device = common.resolve_device(args.device)
    loaded = load_model(device=device)
    explainer = EigenCAM(loaded.model, loaded.target_layer, n_components=args.components)
    info = {
        "eigencam_version": __version__,
        "command": "demo",
        "model": loaded.name,
        "method": "eigencam",
        "params": {"components": args.components},
        "device": str(device),
    }
    code = _run(
        sample_paths(),
        [],
        explainer,
        loaded,
        loaded.preprocessing,
        device,
        OutputOptions(caption=True),
        args,
        info,
    )
    print(f"open the overlays in {args.out}/ (captions: top-3 ImageNet classes)")
    return code
