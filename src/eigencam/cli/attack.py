"""``eigencam attack``: explanations of clean and DeepFool-perturbed images, compared (Section
IV-B and Figure 4 of the Eigen-CAM paper)."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from eigencam.cli.common import (
    add_batch_args,
    add_model_args,
    add_resume_args,
    load_model_from_args,
)
from eigencam.cli.dataset_args import (
    add_dataset_args,
    add_methods_args,
    open_dataset_from_args,
    run_benchmark,
)
from eigencam.cli.localize import build_explainers
from eigencam.errors import InvalidParameterError, check_range
from eigencam.evaluation.robustness import AttackSettings, run_attack

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
    add_resume_args(o)
    o.add_argument("--no-figures", action="store_true", help="do not write figures/")
    o.add_argument(
        "--tile", type=int, default=224, help="cell size of the figures (default: %(default)s)"
    )
    add_batch_args(p, batch_size=8)
    p.set_defaults(run=run_attack_command)


def thresholds_from(runs: list[str | Path]) -> dict[str, float]:
    """{method key: chosen paper-protocol threshold} of finished ``localize`` runs (their
    folders or metrics.json; the first run naming a method wins)."""
    merged: dict[str, float] = {}
    for run in map(Path, runs):
        f = run / "metrics.json" if run.is_dir() else run
        try:
            for key, m in json.loads(f.read_text())["methods"].items():
                if m["paper"]["chosen_threshold"] is not None:
                    merged.setdefault(key, float(m["paper"]["chosen_threshold"]))
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
            raise InvalidParameterError(
                f"--thresholds-from {run}: not a finished `eigencam localize` run ({err})"
            ) from None
    return merged


def run_attack_command(args: argparse.Namespace) -> int:
    check_range("--batch-size", args.batch_size, 1)
    check_range("--tile", args.tile, 16, 2048)
    settings = AttackSettings(
        candidates=args.candidates,
        overshoot=args.overshoot,
        max_iter=args.max_iter,
        box_threshold=args.box_threshold,
        method_thresholds=thresholds_from(args.thresholds_from),
        top_fraction=args.top_fraction,
        iou_threshold=args.iou,
        same_class=not args.no_same_class,
        noise_control=args.noise_control,
        seed=args.seed,
    )
    dataset = open_dataset_from_args(args, "attack")
    loaded, pre, device = load_model_from_args(args)
    explainers = build_explainers(args, loaded)
    kept = {k: v for k, v in settings.method_thresholds.items() if k in explainers}
    return run_benchmark(
        args,
        "attack",
        loaded,
        device,
        run_attack,
        dataset,
        pre,
        explainers,
        settings=replace(settings, method_thresholds=kept),  # a localize run may list others
        figures=not args.no_figures,
        tile=args.tile,
        reference=args.reference,
    )
