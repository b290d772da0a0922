"""``eigencam layers``: the candidate target layers of a model, and the automatic choice."""

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


def register(parsers: dict[str, argparse.ArgumentParser]) -> None:
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
