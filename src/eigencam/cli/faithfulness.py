"""``eigencam faithfulness``: deletion / insertion AUC, average drop / increase and ROAD for every
method on a dataset, next to a random map and a centred Gaussian."""

from __future__ import annotations

import argparse

from eigencam.cli.common import (
    add_batch_args,
    add_model_args,
    add_resume_args,
    comma_list,
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
from eigencam.evaluation.faithfulness_run import FaithfulnessSettings, run_faithfulness

DEFAULT_METHODS = "eigencam,gradcam,gradcampp,cnnfixations"

EXAMPLE = """\
examples:
  eigencam faithfulness ../shared/data/imagenet-val-dev --per-class 2 --out faith/
  eigencam faithfulness DEV --methods eigencam,cam,gradcam,layercam,saliency --steps 10 \\
      --baseline constant --out faith-black/
  eigencam faithfulness DEV --per-class 2 --out faith/ --resume    # continue a killed run
"""


def register(sub: argparse._SubParsersAction) -> None:

    p = sub.add_parser(
        "faithfulness",
        help="faithfulness metrics of the maps: deletion/insertion AUC, average drop, ROAD",
        description="Each method explains every image's top-1 predicted class; its map is "
        "scored with deletion and insertion AUC, average drop and increase in confidence, and "
        "ROAD (most / least relevant first, and their combination). A random map and a centred "
        "Gaussian are always scored too, as floors. Writes metrics.json, table.md, "
        "per_image.csv and curves.png. Resumable; an unreadable image is a recorded failure "
        "(exit code 1). Cost per image and method: 2 (steps + 1) + 2 + 2 x fractions forward "
        "passes plus ROAD's sparse solves.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_dataset_args(p)
    add_model_args(p)
    add_methods_args(p, DEFAULT_METHODS, "; the baselines are always added")
    f = p.add_argument_group("metrics")
    f.add_argument(
        "--steps",
        type=int,
        default=20,
        help="deletion / insertion steps (default: %(default)s)",
    )
    f.add_argument(
        "--baseline",
        default="blur",
        choices=["blur", "constant"],
        help="what deleted pixels become and insertion starts from (default: %(default)s)",
    )
    f.add_argument(
        "--constant",
        type=float,
        default=0.0,
        help="pixel value in [0, 1] of --baseline constant (default: %(default)s, black)",
    )
    f.add_argument(
        "--blur-sigma",
        type=float,
        default=None,
        help="sigma in pixels of --baseline blur (default: 5%% of the side)",
    )
    f.add_argument(
        "--road-fractions",
        default="0.1,0.3,0.5,0.7,0.9",
        metavar="LIST",
        help="fractions of pixels imputed by ROAD (default: %(default)s)",
    )
    f.add_argument(
        "--road-noise",
        type=float,
        default=0.01,
        help="ROAD imputation noise, pixel units (default: %(default)s)",
    )
    f.add_argument(
        "--gaussian-sigma",
        type=float,
        default=0.25,
        help="centre-Gaussian baseline sigma, fraction of the side (default: %(default)s)",
    )
    o = p.add_argument_group("output")
    o.add_argument("--out", default="eigencam-faithfulness", metavar="DIR", help="output folder")
    add_resume_args(o)
    add_batch_args(p, batch_size=8)
    p.set_defaults(run=run_faithfulness_command)


def run_faithfulness_command(args: argparse.Namespace) -> int:
    check_range("--batch-size", args.batch_size, 1)
    try:
        fractions = tuple(float(v) for v in comma_list(args.road_fractions))
    except (ValueError, argparse.ArgumentTypeError):
        raise InvalidParameterError(
            "--road-fractions takes numbers in (0, 1) like 0.1,0.5,0.9, "
            f"got {args.road_fractions!r}"
        ) from None
    settings = FaithfulnessSettings(
        steps=args.steps,
        baseline=args.baseline,
        constant=args.constant,
        blur_sigma=args.blur_sigma,
        road_fractions=fractions,
        road_noise=args.road_noise,
        seed=args.seed,
        gaussian_sigma=args.gaussian_sigma,
    )
    dataset = open_dataset_from_args(args, "faithfulness")
    loaded, pre, device = load_model_from_args(args)
    explainers = build_explainers(args, loaded)
    return run_benchmark(
        args,
        "faithfulness",
        loaded,
        device,
        run_faithfulness,
        dataset,
        pre,
        explainers,
        settings=settings,
    )
