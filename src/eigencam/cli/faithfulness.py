"""``eigencam faithfulness``: deletion / insertion AUC, average drop / increase and ROAD for every
method on a dataset, next to a random map and a centred Gaussian."""

from __future__ import annotations

import argparse

from eigencam.cli import args as cli_args
from eigencam.cli import common
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


def register(parsers: dict[str, argparse.ArgumentParser]) -> None:
    p = cli_args.command(
        parsers,
        "faithfulness",
        "Each method explains every image's top-1 predicted class; its map is scored with "
        "deletion and insertion AUC, average drop and increase in confidence, and ROAD (most / "
        "least relevant first, and their combination). A random map and a centred Gaussian are "
        "always scored too, as floors. Writes metrics.json, table.md, per_image.csv and "
        "curves.png. Resumable; an unreadable image is a recorded failure (exit code 1). Cost "
        "per image and method: 2 (steps + 1) + 2 + 2 x fractions forward passes plus ROAD's "
        "sparse solves.",
        EXAMPLE,
        run_faithfulness_command,
    )
    cli_args.add_dataset_args(p)
    cli_args.add_model_args(p)
    cli_args.add_methods_args(p, DEFAULT_METHODS, "; the baselines are always added")
    f = p.add_argument_group("metrics")
    cli_args.option(f, "--steps", 20, "deletion / insertion steps")
    baseline = "what deleted pixels become and insertion starts from"
    cli_args.option(f, "--baseline", "blur", baseline, choices=["blur", "constant"])
    cli_args.option(f, "--constant", 0.0, "pixel value in [0, 1] of --baseline constant")
    f.add_argument(
        "--blur-sigma",
        type=float,
        default=None,
        help="sigma in pixels of --baseline blur (default: 5%% of the side)",
    )
    fractions = "fractions of pixels imputed by ROAD"
    cli_args.option(f, "--road-fractions", "0.1,0.3,0.5,0.7,0.9", fractions, metavar="LIST")
    cli_args.option(f, "--road-noise", 0.01, "ROAD imputation noise, pixel units")
    sigma = "centre-Gaussian baseline sigma, fraction of the side"
    cli_args.option(f, "--gaussian-sigma", 0.25, sigma)
    cli_args.add_run_args(p, "eigencam-faithfulness", 8)


def run_faithfulness_command(args: argparse.Namespace) -> int:
    check_range("--batch-size", args.batch_size, 1)
    try:
        fractions = tuple(float(v) for v in cli_args.comma_list(args.road_fractions))
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
    return common.run_benchmark(args, run_faithfulness, settings=settings)
