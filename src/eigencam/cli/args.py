"""The argument groups the commands share (model, method or methods, run, dataset) and the
converters argparse checks their values with. :mod:`eigencam.cli.common` reads them back."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from eigencam.errors import EigenCAMError
from eigencam.io.images import DEFAULT_MAX_PIXELS
from eigencam.methods import available_methods, get_method, parse_spec, parse_value

DEVICE_HELP = "cpu, cuda, cuda:1... (default: cuda when available, else cpu)"


def command(
    parsers: dict[str, argparse.ArgumentParser],
    name: str,
    description: str,
    example: str,
    run: Callable[[argparse.Namespace], int],
) -> argparse.ArgumentParser:
    """The parser of command ``name`` (made with its one-line help by
    :func:`eigencam.cli.main.build_parser`) given its description, example and runner."""
    p = parsers[name]
    p.description, p.epilog = description, example
    p.set_defaults(run=run)
    return p


def option(group: Any, flag: str, default: Any, text: str, **kwargs: Any) -> None:
    """``flag`` of the type of its ``default``, its help ``text`` followed by the default."""
    kwargs.setdefault("type", type(default))
    group.add_argument(flag, default=default, help=f"{text} (default: %(default)s)", **kwargs)


def add_images_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "images", nargs="+", metavar="IMAGE", help="image files, folders or glob patterns"
    )


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """--model, --model-arg, --weights, the preprocessing overrides and --device."""
    g = parser.add_argument_group("model")
    g.add_argument(
        "--model",
        default="efficientnet_lite0",
        metavar="NAME",
        help="embedded default efficientnet_lite0 (real ImageNet weights); a torchvision "
        "classifier, detector or segmenter (resnet50, vit_b_16, fasterrcnn_resnet50_fpn, "
        "deeplabv3_resnet50...); timm:NAME; an Ultralytics yaml (yolov8n.yaml); a .onnx or "
        "TorchScript file; or package.module:factory / file.py:factory "
        "(default: %(default)s; list: eigencam models)",
    )
    g.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="option for the model's constructor, repeatable (--model-arg image_size=64, "
        "--model-arg min_size=512); VALUE is read as a Python literal",
    )
    g.add_argument(
        "--weights",
        metavar="FILE",
        help="state dict (.pt/.pth, read with weights_only=True) or .safetensors for --model",
    )
    g.add_argument(
        "--input-size", type=int, nargs="+", metavar="N", help="model input size: N or H W"
    )
    rgb = ("R", "G", "B")
    g.add_argument("--mean", type=float, nargs=3, metavar=rgb, help="normalisation mean")
    g.add_argument("--std", type=float, nargs=3, metavar=rgb, help="normalisation std")
    g.add_argument(
        "--resize",
        choices=["stretch", "center-crop", "letterbox"],
        help="stretch the whole image to the input size, take the centre crop, or letterbox "
        "(keep the aspect ratio, pad; detectors' default)",
    )
    g.add_argument("--device", default=None, help=DEVICE_HELP)


def add_reshape_arg(group: Any) -> None:
    group.add_argument(
        "--reshape",
        default=None,
        metavar="KIND",
        help="reshape the layer output into maps: tokens (ViT tokens, prefix tokens guessed), "
        "tokens:N (N prefix tokens), channels-last (B, h, w, C), pyramid (dict/list of maps "
        "from a detector backbone); default: the model family's (see docs/models.md)",
    )


def add_method_args(parser: argparse.ArgumentParser) -> None:
    """One ``--method`` spec (``--methods`` is the same option, the spelling of the commands
    that take several) with --layer, --reshape, --target and the old method flags
    (--eigen-smooth, --components, --center, --solver), aliases of spec options."""
    g = parser.add_argument_group("method")
    g.add_argument(
        "--method",
        "--methods",
        default="eigencam",
        type=method_spec,
        metavar="NAME[:KEY=VALUE...]",
        help="explanation method and its options, e.g. eigencam:components=3:combine=energy "
        f"(default: %(default)s; one of {', '.join(available_methods())})",
    )
    g.add_argument(
        "--layer",
        default=None,
        action=LayerAction,
        metavar="auto|NAME[,NAME...]",
        help="target layer (default: auto); several, comma-separated or --layer repeated "
        "(layer3,layer4): their maps, each normalised, are averaged",
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
    solvers = ["auto", "eigh", "svd", "squaring", "subspace"]
    option(g, "--solver", "auto", "eigen-solver (all exact)", choices=solvers)


def add_methods_args(parser: argparse.ArgumentParser, default: str, note: str = "") -> Any:
    """``--methods`` (comma-separated specs; ``--method`` is the same option) and ``--layer``;
    returns the group."""
    m = parser.add_argument_group("methods")
    m.add_argument(
        "--methods",
        "--method",
        type=comma_list,
        default=comma_list(default),
        metavar="LIST",
        help="comma-separated methods, each NAME or NAME:option=value:...; names: "
        + ", ".join(available_methods())
        + f" (default: {default}){note}",
    )
    m.add_argument(
        "--layer",
        default=None,
        action=LayerAction,
        metavar="auto|NAME[,NAME...]",
        help="target layer for the methods that use one (default: the model's); several, "
        "comma-separated or --layer repeated: their maps, each normalised, are averaged",
    )
    return m


def add_run_args(
    parser: argparse.ArgumentParser,
    out: str,
    batch_size: int,
    *,
    resume: bool = True,
    workers: bool = True,
) -> tuple[Any, Any]:
    """The ``output`` group (--out, and --resume/--overwrite with ``resume``) and the
    ``throughput`` group (--batch-size, --workers and --threads with ``workers``, --max-pixels,
    --quiet).

    Returns:
        (output group, throughput group), for the command's own options.
    """
    o = parser.add_argument_group("output")
    option(o, "--out", out, "output folder", metavar="DIR")
    if resume:
        how = o.add_mutually_exclusive_group()
        how.add_argument(
            "--resume",
            action="store_true",
            help="continue the run in --out (after a crash, kill or Ctrl-C), skipping finished "
            "images",
        )
        how.add_argument(
            "--overwrite",
            action="store_true",
            help="discard the run already in --out and start again",
        )
    t = parser.add_argument_group("throughput")
    option(t, "--batch-size", batch_size, "images per forward pass")
    if workers:
        option(t, "--workers", 2, "decoding/writing threads")
        t.add_argument(
            "--threads",
            type=positive_int,
            metavar="N",
            help="torch threads for the model on CPU (default: torch's, all cores); CPU "
            "results depend on it in the last bits",
        )
    option(
        t,
        "--max-pixels",
        DEFAULT_MAX_PIXELS,
        "refuse larger images, a decompression-bomb guard; replaces Pillow's own limit",
        type=pixel_limit,
    )
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    return o, t


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def add_dataset_args(
    parser: argparse.ArgumentParser,
    title: str = "dataset (the layouts of `eigencam localize`)",
    *,
    stratified: bool = True,
) -> None:
    """DATA and the dataset group of the benchmarks: the layouts of
    :mod:`eigencam.evaluation.datasets`, ``--part``, ``--limit`` and, with ``stratified``, a
    seeded class-stratified subset (``--per-class``, ``--seed``)."""
    parser.add_argument("data", metavar="DATA", help="dataset folder (or annotation JSON)")
    d = parser.add_argument_group(title)
    d.add_argument(
        "--format",
        default="auto",
        choices=["auto", "dev", "ilsvrc", "voc", "coco", "cub"],
        help="dataset layout (default: recognised from the folder)",
    )
    d.add_argument("--annotations", metavar="PATH", help="annotation folder / file override")
    d.add_argument("--images", metavar="DIR", help="image folder override")
    d.add_argument(
        "--synsets",
        metavar="FILE",
        help="ILSVRC: LOC_synset_mapping.txt / synsets.txt / imagenet_class_index.json",
    )
    d.add_argument(
        "--class-map",
        metavar="FILE",
        help="VOC/COCO: JSON {class name: model index} or a text file of the model's class "
        "names in index order (without it, only class-agnostic measures have a class)",
    )
    d.add_argument("--image-set", metavar="NAME", help="VOC: ImageSets/Main/NAME.txt; CUB: split")
    d.add_argument(
        "--skip-bad",
        action="store_true",
        help="record and leave out malformed annotations instead of stopping",
    )
    if stratified:
        d.add_argument(
            "--per-class",
            type=int,
            metavar="N",
            help="a seeded random subset of N images per class (stratified; see --seed)",
        )
        option(d, "--seed", 0, "seed of --per-class")
    d.add_argument("--part", metavar="I/N", help="part I of N interleaved parts of the dataset")
    d.add_argument(
        "--limit", type=int, metavar="N", help="only the first N images (after the options above)"
    )


def pixel_limit(value: str) -> int:
    """``--max-pixels``: a whole number of pixels >= 1 (argparse reports a usage error)."""
    try:
        pixels = int(value)
    except ValueError:
        pixels = 0
    if pixels < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of pixels >= 1, got {value!r}")
    return pixels


def method_spec(value: str) -> str:
    """``--method``: a spec ``name[:key=value...]`` of a registered method (checked now)."""
    if "," in value:
        raise argparse.ArgumentTypeError(
            f"{value!r}: this command explains with one method; to see several side by side, "
            "use eigencam compare IMAGE --methods a,b"
        )
    try:
        get_method(parse_spec(value).name)
    except EigenCAMError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return value.strip()


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


class LayerAction(argparse.Action):
    """``--layer``: one name (kept a string), or several, comma-separated or repeated (a list).

    ``--layer layer4`` gives ``"layer4"``; ``--layer layer3,layer4`` and ``--layer layer3
    --layer layer4`` give ``["layer3", "layer4"]`` (the explainers' list ``target_layer``).
    """

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        before = getattr(namespace, self.dest, None)
        names = [] if before is None else [before] if isinstance(before, str) else list(before)
        added = [v.strip() for v in str(values).split(",") if v.strip()]
        if not added:
            raise argparse.ArgumentError(self, f"expected a layer name, got {values!r}")
        names += added
        setattr(namespace, self.dest, names[0] if len(names) == 1 else names)


def comma_list(value: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items
