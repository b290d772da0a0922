"""Dataset arguments of the benchmarks (``localize``, ``attack``, ``faithfulness``): the layouts
of :mod:`eigencam.evaluation.datasets`, the part and limit options, and for the per-image
benchmarks too costly to run on a whole dataset a seeded, class-stratified subset."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eigencam import __version__
from eigencam.cli.common import Progress, comma_list
from eigencam.errors import InvalidParameterError, check
from eigencam.evaluation.datasets import Dataset, open_dataset, read_class_map, stratified
from eigencam.methods import available_methods
from eigencam.runs import RunOptions


def add_dataset_args(
    p: argparse.ArgumentParser,
    title: str = "dataset (the layouts of `eigencam localize`)",
    *,
    stratified: bool = True,
) -> None:
    """DATA and the dataset group (``--per-class`` and ``--seed`` with ``stratified``)."""
    p.add_argument("data", metavar="DATA", help="dataset folder (or annotation JSON)")
    d = p.add_argument_group(title)
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
        d.add_argument(
            "--seed", type=int, default=0, help="seed of --per-class (default: %(default)s)"
        )
    d.add_argument("--part", metavar="I/N", help="part I of N interleaved parts of the dataset")
    d.add_argument(
        "--limit", type=int, metavar="N", help="only the first N images (after the options above)"
    )


def read_dataset(args: argparse.Namespace, path: str) -> Dataset:
    """The whole dataset at ``path``, read with the layout options of the arguments."""
    class_map = read_class_map(args.class_map) if args.class_map else None
    return open_dataset(
        path,
        format=args.format,
        skip_bad=args.skip_bad,
        class_map=class_map,
        synsets=args.synsets,
        annotations=args.annotations,
        images=args.images,
        image_set=args.image_set,
    )


def open_dataset_from_args(args: argparse.Namespace, command: str) -> Dataset:
    """The dataset the arguments select: read, stratified, split, limited."""
    dataset = read_dataset(args, args.data)
    if getattr(args, "per_class", None) is not None:
        dataset = stratified(dataset, args.per_class, seed=args.seed)
    if args.part is not None:
        try:
            i, n = (int(v) for v in args.part.split("/"))
        except ValueError:
            raise InvalidParameterError(f"--part takes I/N (e.g. 1/2), got {args.part!r}") from None
        dataset = dataset.part(i, n)
    dataset = dataset.head(args.limit)
    check(bool(dataset.samples), f"{args.data}: no images to evaluate")
    for source, reason in dataset.skipped:
        print(f"eigencam {command}: skipped {source}: {reason}", file=sys.stderr)
    return dataset


def run_benchmark(
    args: argparse.Namespace,
    command: str,
    loaded: Any,
    device: Any,
    evaluate: Callable[..., dict[str, Any]],
    dataset: Dataset,
    pre: Any,
    explainers: dict,
    **options: Any,
) -> int:
    """Run a per-image benchmark (``run_attack``, ``run_faithfulness``) with the run options,
    progress bar and provenance of the arguments; print its table and failures.

    Returns:
        The exit code: 1 when some image failed, else 0.
    """
    run_info = {
        "eigencam_version": __version__,
        "command": command,
        "argv": sys.argv[1:],
        "model": loaded.name,
        "weights": args.weights,
        "pretrained": loaded.pretrained,
        "subset": {k: getattr(args, k) for k in ("per_class", "seed", "part", "limit")},
        "device": str(device),
    }
    progress = Progress(None, command, enabled=not args.quiet, min_items=2)
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
        metrics = evaluate(
            dataset,
            loaded.model,
            pre,
            explainers,
            args.out,
            run_info=run_info,
            labels=loaded.labels,
            run=run,
            **options,
        )
    finally:
        progress.close()
    out = Path(args.out)
    sys.stdout.write((out / "table.md").read_text())
    print(f"-> {out / 'metrics.json'}, {out / 'table.md'}, {out / 'per_image.csv'}")
    for fail in metrics["failures"]:
        print(f"eigencam {command}: {fail['key']}: {fail['error']}", file=sys.stderr)
    return 1 if metrics["failures"] else 0


def add_methods_args(p: argparse.ArgumentParser, default: str, note: str = "") -> None:
    """The ``methods`` group shared by the benchmarks: ``--methods LIST`` and ``--layer``."""
    m = p.add_argument_group("methods")
    m.add_argument(
        "--methods",
        type=comma_list,
        default=comma_list(default),
        metavar="LIST",
        help="comma-separated methods, each NAME or NAME:option=value:...; names: "
        + ", ".join(available_methods())
        + f" (default: {default}){note}",
    )
    m.add_argument(
        "--layer", default=None, metavar="auto|NAME", help="target layer (default: the model's)"
    )
