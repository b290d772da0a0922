"""``eigencam attack``: explanations of clean and DeepFool-perturbed images, compared (Section
IV-B and Figure 4 of the Eigen-CAM paper)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from eigencam.cli.common import Progress, add_batch_args, add_model_args
from eigencam.cli.dataset_args import (
    add_dataset_args,
    add_methods_args,
    benchmark_run_info,
    open_dataset_from_args,
    pending_count,
)
from eigencam.errors import InvalidParameterError

DEFAULT_METHODS = "eigencam,gradcam,cnnfixations"

EXAMPLE = """\
examples:
  eigencam attack ../shared/data/imagenet-val-dev --per-class 5 --out attack/
  eigencam attack DEV --methods eigencam,gradcam,gradcampp,cnnfixations,cmwp \\
      --thresholds-from loc/half1 --noise-control --out attack-all/
  eigencam attack ILSVRC2012/ --synsets LOC_synset_mapping.txt --model vgg16 \\
      --weights vgg16.pth --limit 200 --out attack-vgg16/     # the paper's model
  eigencam attack DEV --per-class 5 --out attack/ --resume  # continue a killed run
"""


def register(sub: argparse._SubParsersAction) -> None:

    p = sub.add_parser(
        "attack",
        help="DeepFool adversarial examples: how much do the explanations change? (Figure 4)",
        description="Attack each image with DeepFool (multi-class, top-10 candidates, "
        "overshoot 0.02, at most 50 steps) and compare every method's map of the clean image "
        "with its map of the adversarial image: Pearson correlation, SSIM, IoU of the top "
        "regions and of the localization boxes, and whether each box still localizes the "
        "object. Class methods explain the clean class on the clean image and the adversarial "
        "class on the adversarial one (also: the clean class on both). Writes metrics.json, "
        "table.md, per_image.csv and figures/<image>.png (clean row, adversarial row, one "
        "column per method). Resumable; an image that cannot be read or attacked is a "
        "recorded failure (exit code 1).",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_dataset_args(p)
    add_model_args(p)
    add_methods_args(p, DEFAULT_METHODS)
    a = p.add_argument_group("attack (DeepFool)")
    a.add_argument(
        "--candidates",
        type=int,
        default=10,
        help="top classes considered (default: %(default)s)",
    )
    a.add_argument(
        "--overshoot", type=float, default=0.02, help="overshoot eta (default: %(default)s)"
    )
    a.add_argument("--max-iter", type=int, default=50, help="maximum steps (default: %(default)s)")
    s = p.add_argument_group("measures")
    s.add_argument(
        "--box-threshold",
        type=float,
        default=0.15,
        metavar="TAU",
        help="localization box: largest component of map > TAU * max (default: %(default)s, "
        "the top of the paper's 5-15%% sweep)",
    )
    s.add_argument(
        "--thresholds-from",
        metavar="DIR",
        action="append",
        default=[],
        help="per-method box thresholds chosen by an `eigencam localize` run (its folder or "
        "metrics.json); repeatable (the first run naming a method wins); methods none names "
        "use --box-threshold",
    )
    s.add_argument(
        "--top-fraction",
        type=float,
        default=0.15,
        help="share of pixels in the top regions compared (default: %(default)s)",
    )
    s.add_argument(
        "--iou", type=float, default=0.5, help="IoU for a box to localize (default: %(default)s)"
    )
    s.add_argument(
        "--no-same-class",
        action="store_true",
        help="skip the variant where class methods explain the clean class on both images",
    )
    s.add_argument(
        "--noise-control",
        action="store_true",
        help="also compare with Gaussian noise of the same L2 norm as the adversarial "
        "perturbation (one more explanation per method and image)",
    )
    s.add_argument(
        "--reference",
        default="eigencam",
        metavar="METHOD",
        help="method the others are paired with in the comparison table (default: %(default)s)",
    )
    o = p.add_argument_group("output")
    o.add_argument("--out", default="eigencam-attack", metavar="DIR", help="output folder")
    o.add_argument("--resume", action="store_true", help="continue a killed run in --out")
    o.add_argument("--no-figures", action="store_true", help="do not write figures/")
    o.add_argument(
        "--tile", type=int, default=224, help="cell size of the figures (default: %(default)s)"
    )
    add_batch_args(p, batch_size=8)
    p.set_defaults(run=run_attack_command)


def thresholds_from(path: str | Path) -> dict[str, float]:
    """{method key: chosen paper-protocol threshold} of a finished ``localize`` run."""
    path = Path(path)
    f = path / "metrics.json" if path.is_dir() else path
    try:
        data = json.loads(f.read_text())
        return {
            key: float(m["paper"]["chosen_threshold"])
            for key, m in data["methods"].items()
            if m["paper"]["chosen_threshold"] is not None
        }
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise InvalidParameterError(
            f"--thresholds-from {path}: not a finished `eigencam localize` run ({err})"
        ) from None


def run_attack_command(args: argparse.Namespace) -> int:
    from eigencam.cli.common import load_model_from_args
    from eigencam.cli.localize import build_explainers
    from eigencam.evaluation.robustness import AttackSettings, run_attack

    if args.batch_size < 1:
        raise InvalidParameterError(f"--batch-size must be >= 1, got {args.batch_size}")
    if not 16 <= args.tile <= 2048:
        raise InvalidParameterError(f"--tile must be in [16, 2048] pixels, got {args.tile}")
    settings = AttackSettings(
        candidates=args.candidates,
        overshoot=args.overshoot,
        max_iter=args.max_iter,
        box_threshold=args.box_threshold,
        method_thresholds=_merged_thresholds(args.thresholds_from),
        top_fraction=args.top_fraction,
        iou_threshold=args.iou,
        same_class=not args.no_same_class,
        noise_control=args.noise_control,
        seed=args.seed,
    )
    dataset = open_dataset_from_args(args, "attack")
    loaded, pre, device = load_model_from_args(args)
    explainers = build_explainers(args, loaded)
    settings = _only_listed(settings, list(explainers))
    run_info = benchmark_run_info(args, "attack", loaded, device)
    total = pending_count(args, dataset)
    progress = Progress(total, "attack", enabled=not args.quiet, min_items=2)
    try:
        metrics = run_attack(
            dataset,
            loaded.model,
            pre,
            explainers,
            args.out,
            settings=settings,
            run_info=run_info,
            labels=loaded.labels,
            batch_size=args.batch_size,
            workers=args.workers,
            device=device,
            resume=args.resume,
            figures=not args.no_figures,
            tile=args.tile,
            max_pixels=args.max_pixels,
            reference=args.reference,
            progress=progress,
        )
    finally:
        progress.close()
    out = Path(args.out)
    sys.stdout.write((out / "table.md").read_text())
    print(f"-> {out / 'metrics.json'}, {out / 'table.md'}, {out / 'per_image.csv'}")
    for fail in metrics["failures"]:
        print(f"eigencam attack: {fail['key']}: {fail['error']}", file=sys.stderr)
    return 1 if metrics["failures"] else 0


def _merged_thresholds(runs: list[str]) -> dict[str, float]:
    merged: dict[str, float] = {}
    for run in runs:
        for key, value in thresholds_from(run).items():
            merged.setdefault(key, value)
    return merged


def _only_listed(settings, methods: list[str]):
    """Keep the thresholds of the methods evaluated (a localize run may list others)."""
    from dataclasses import replace

    kept = {k: v for k, v in settings.method_thresholds.items() if k in methods}
    return replace(settings, method_thresholds=kept)
