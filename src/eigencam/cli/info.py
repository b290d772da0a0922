"""``eigencam models``, ``eigencam layers`` and ``eigencam methods``: what is available."""

from __future__ import annotations

import argparse
import json
import sys

from eigencam.cli.common import add_model_args, load_model_from_args, print_table


def register(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser(
        "models",
        help="list model names",
        description="List the models --model accepts: registered models (with shipped weights) "
        "first, then torchvision classifiers (random weights unless --weights is given).",
        epilog="example:\n  eigencam models --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    m.add_argument("--json", action="store_true", help="machine-readable output")
    m.set_defaults(run=run_models)

    la = sub.add_parser(
        "layers",
        help="list candidate target layers of a model with their output shapes",
        description="Run one forward pass on a blank image and print every module whose output is "
        "a spatial map, with its shape; '*' marks the layer target_layer='auto' picks.",
        epilog="examples:\n  eigencam layers resnet50\n"
        "  eigencam layers efficientnet_lite0 --all --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    la.add_argument("model_name", metavar="MODEL", help="model name (see eigencam models)")
    add_model_args(la)
    la.add_argument("--all", action="store_true", help="list every module, not only candidates")
    la.add_argument("--json", action="store_true", help="machine-readable output")
    la.set_defaults(run=run_layers)

    me = sub.add_parser(
        "methods",
        help="list explanation methods",
        description="List every registered explanation method with a one-line description: "
        "whether it needs gradients, whether it explains a class, its cost.",
        epilog="examples:\n  eigencam methods --json\n"
        "  eigencam methods --markdown > docs/methods.md   # the docs page",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fmt = me.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="machine-readable output")
    fmt.add_argument(
        "--markdown", action="store_true", help="the docs page (docs/methods.md) with the table"
    )
    me.set_defaults(run=run_methods)


def run_models(args: argparse.Namespace) -> int:
    from eigencam.models import registered_models
    from eigencam.models.registry import torchvision_classifiers

    registered = registered_models()
    tv = [n for n in torchvision_classifiers() if n not in {e.name for e in registered}]
    if args.json:
        data = [
            {
                "name": e.name,
                "pretrained": e.pretrained,
                "input_size": list(e.preprocessing.input_size),
                "description": e.description,
            }
            for e in registered
        ] + [{"name": n, "pretrained": False, "description": "torchvision classifier"} for n in tv]
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
    print_table(rows, ("name", "weights", "input", "description"))
    print("\ntorchvision classifiers (random weights unless --weights FILE):")
    width = max(len(n) for n in tv) + 2
    per_line = max(1, 96 // width)
    for i in range(0, len(tv), per_line):
        print("  " + "".join(n.ljust(width) for n in tv[i : i + per_line]).rstrip())
    print("\nYour own model: --model package.module:factory or --model path/to/file.py:factory")
    return 0


def run_layers(args: argparse.Namespace) -> int:
    import torch

    from eigencam.capture import list_layers

    args.model = args.model_name
    loaded, pre, device = load_model_from_args(args)
    example = torch.zeros(1, 3, *pre.input_size, device=device)
    infos = list_layers(loaded.model, example)
    shown = [i for i in infos if args.all or i.candidate]
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "name": i.name,
                        "type": i.type,
                        "shape": list(i.shape) if i.shape else None,
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
    rows = [
        (
            "*" if i.auto else "",
            i.name,
            i.type,
            "x".join(map(str, i.shape[1:])) if i.shape else "-",
            i.calls,
        )
        for i in shown
    ]
    print(f"{loaded.name}: input {pre.input_size[0]}x{pre.input_size[1]}")
    print_table(rows, ("auto", "layer", "type", "output (C x h x w)", "calls"))
    if not any(i.auto for i in infos):
        print("no automatic choice: pass --layer NAME", file=sys.stderr)
    return 0


def run_methods(args: argparse.Namespace) -> int:
    from eigencam.methods import available_methods, method_info

    infos = [method_info(name) for name in available_methods()]
    if args.json:
        print(json.dumps(infos, indent=2))
        return 0
    if args.markdown:
        from eigencam.methods.catalog import methods_page

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
    print_table(rows, ("method", "gradients", "class-specific", "description"))
    print("\npapers, layer requirements and costs: eigencam methods --markdown (docs/methods.md)")
    return 0
