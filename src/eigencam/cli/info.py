"""``eigencam models``, ``eigencam layers`` and ``eigencam methods``: what is available."""

from __future__ import annotations

import argparse
import json
import sys

from eigencam.capture import family_of, list_layers, runner_for
from eigencam.capture.families import declared_feature_name
from eigencam.capture.reshape import parse_reshape
from eigencam.cli import args as cli_args
from eigencam.cli import common
from eigencam.errors import check
from eigencam.methods import available_methods, method_info
from eigencam.methods.catalog import methods_page
from eigencam.models import registered_models
from eigencam.models.sources.detection import DETECTORS
from eigencam.models.sources.segmentation import SEGMENTERS
from eigencam.models.sources.torchvision import names as torchvision_classifiers


def register(parsers: dict[str, argparse.ArgumentParser]) -> None:
    m = cli_args.command(
        parsers,
        "models",
        "List the models --model accepts: registered models (with shipped weights) first, then "
        "torchvision classifiers, detectors and segmenters (random weights unless --weights is "
        "given), and the name patterns for timm, Ultralytics YOLO, ONNX, TorchScript and your "
        "own factories.",
        "example:\n  eigencam models --json",
        run_models,
    )
    m.add_argument("--json", action="store_true", help="machine-readable output")

    la = cli_args.command(
        parsers,
        "layers",
        "Run one forward pass on a blank image and print every module whose output can be "
        "explained (a spatial map, after the model family's reshape: ViT tokens, Swin "
        "channels-last maps, a detector's feature pyramid), with its shapes; '*' marks the "
        "layer target_layer='auto' picks. For detectors the backbone and neck levels are "
        "proposed; for an ONNX file, its candidate tensors.",
        "examples:\n  eigencam layers resnet50\n"
        "  eigencam layers efficientnet_lite0 --all --json\n"
        "  eigencam layers fasterrcnn_resnet50_fpn --model-arg min_size=512\n"
        "  eigencam layers yolov8n.yaml\n"
        "  eigencam layers model.onnx",
        run_layers,
    )
    la.add_argument(
        "model_name",
        metavar="MODEL",
        nargs="?",
        help="model name (see eigencam models); the same as --model, which it replaces "
        "(default: efficientnet_lite0)",
    )
    cli_args.add_model_args(la)
    la.set_defaults(model=None)
    cli_args.add_reshape_arg(la)
    la.add_argument("--all", action="store_true", help="list every module, not only candidates")
    la.add_argument("--json", action="store_true", help="machine-readable output")

    me = cli_args.command(
        parsers,
        "methods",
        "List every registered explanation method with a one-line description: whether it "
        "needs gradients, whether it explains a class, its cost.",
        "examples:\n  eigencam methods --json\n"
        "  eigencam methods --markdown > docs/methods.md   # the docs page",
        run_methods,
    )
    fmt = me.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="machine-readable output")
    fmt.add_argument(
        "--markdown", action="store_true", help="the docs page (docs/methods.md) with the table"
    )


def run_models(args: argparse.Namespace) -> int:

    registered = registered_models()
    names = {e.name for e in registered}
    tv = [n for n in torchvision_classifiers() if n not in names]
    patterns = [
        ("timm:NAME", "any timm model, e.g. timm:resnet50, timm:vit_small_patch16_224"),
        ("NAME.yaml", "an Ultralytics model yaml, e.g. yolov8n.yaml, yolo11s.yaml, or a path"),
        ("FILE.onnx", "an ONNX model run with onnxruntime"),
        ("FILE.pt", "a TorchScript archive (torch.jit.save); .pth/.ts/.torchscript too"),
        ("module:factory", "your own model: package.module:factory or file.py:factory"),
    ]
    if args.json:
        data = [
            {
                "name": e.name,
                "kind": "registered",
                "pretrained": e.pretrained,
                "input_size": list(e.preprocessing.input_size),
                "description": e.description,
            }
            for e in registered
        ]
        for kind, group in (
            ("torchvision classifier", tv),
            ("torchvision detector", DETECTORS),
            ("torchvision segmenter", SEGMENTERS),
        ):
            data += [{"name": n, "kind": kind, "pretrained": False} for n in group]
        data += [{"name": p, "kind": "pattern", "description": d} for p, d in patterns]
        print(json.dumps(data, indent=2))
        return 0
    rows = [
        (
            e.name,
            "shipped" if e.pretrained else "random",
            "x".join(map(str, e.preprocessing.input_size)),
            e.description,
        )
        for e in registered
    ]
    common.print_table(rows, ("name", "weights", "input", "description"))
    for title, group in (
        ("torchvision classifiers", tv),
        ("torchvision detectors", list(DETECTORS)),
        ("torchvision segmenters", list(SEGMENTERS)),
    ):
        print(f"\n{title} (random weights unless --weights FILE):")
        width = max(len(n) for n in group) + 2
        per_line = max(1, 96 // width)
        for i in range(0, len(group), per_line):
            print("  " + "".join(n.ljust(width) for n in group[i : i + per_line]).rstrip())
    print("\nmore models, by name pattern:")
    for pattern, description in patterns:
        print(f"  {pattern:<16}{description}")
    return 0


def _shape(shape) -> str:
    return "x".join(map(str, shape[1:])) if shape else "-"


def run_layers(args: argparse.Namespace) -> int:
    import torch

    check(
        args.model_name is None or args.model is None or args.model_name == args.model,
        f"two models given: {args.model_name!r} and --model {args.model!r}; give one (the "
        "positional MODEL or --model, they mean the same)",
    )
    args.model = args.model_name or args.model or "efficientnet_lite0"
    loaded, pre, device = common.load_model_from_args(args)
    example = torch.zeros(1, 3, *pre.input_size, device=device)
    reshape = parse_reshape(args.reshape)
    infos = list_layers(loaded.model, example, reshape)
    shown = [i for i in infos if args.all or i.candidate]
    family = family_of(runner_for(loaded.model)) if reshape is None else None
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "name": i.name,
                        "type": i.type,
                        "shape": list(i.shape) if i.shape else None,
                        "map_shape": list(i.map_shape) if i.map_shape else None,
                        "levels": [list(s) for s in i.levels] if i.levels else None,
                        "calls": i.calls,
                        "candidate": i.candidate,
                        "auto": i.auto,
                    }
                    for i in shown
                ],
                indent=2,
            )
        )
        return 0
    rows = []
    for i in shown:
        output = _shape(i.shape)
        if i.levels:
            output = f"{len(i.levels)} maps: " + ", ".join(_shape(s) for s in i.levels)
        rows.append(("*" if i.auto else "", i.name, i.type, output, _shape(i.map_shape), i.calls))
    print(f"{loaded.name}: input {pre.input_size[0]}x{pre.input_size[1]}")
    if family is not None:
        transform = repr(family.transform) if family.transform is not None else "none"
        print(f"family: {family.name} (default layer {family.layer}, reshape {transform})")
    common.print_table(
        rows, ("auto", "layer", "type", "output (C x h x w)", "map (C x h x w)", "calls")
    )
    chosen = next((i for i in infos if i.auto), None)
    if chosen is None:
        print("no automatic choice: pass --layer NAME", file=sys.stderr)
    else:
        why = _why_auto(loaded.model, chosen.name, reshape)
        print(f"automatic layer: {chosen.name} ({_shape(chosen.map_shape)}), {why}")
    return 0


def _why_auto(model, name: str, reshape) -> str:
    """The rule of :func:`eigencam.capture.layers.resolve_target` that picked ``name``."""
    runner = runner_for(model)
    family = family_of(runner)
    if reshape is None and family is not None and family.layer == name:
        return f"the default layer of the {family.name} family (docs/models.md)"
    if declared_feature_name(runner) == name:
        return "the last feature layer the model declares (timm's feature_info)"
    if reshape is not None:
        return "the last module whose output --reshape turns into a spatial map"
    return "the last spatial map in the forward pass before the global pooling"


def run_methods(args: argparse.Namespace) -> int:

    infos = [method_info(name) for name in available_methods()]
    if args.json:
        print(json.dumps(infos, indent=2))
        return 0
    if args.markdown:
        sys.stdout.write(methods_page())
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
    common.print_table(rows, ("method", "gradients", "class-specific", "description"))
    print("\npapers, layer requirements and costs: eigencam methods --markdown (docs/methods.md)")
    return 0
