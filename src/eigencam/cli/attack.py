"""``eigencam attack``: explanations of clean and DeepFool-perturbed images, compared (Section
IV-B and Figure 4 of the Eigen-CAM paper)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from eigencam.cli import args as cli_args
from eigencam.cli import common
from eigencam.errors import InvalidParameterError, check_range
from eigencam.evaluation.robustness import AttackSettings, run_attack
from eigencam.methods import parse_spec

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


def register(parsers: dict[str, argparse.ArgumentParser]) -> None:
    p = cli_args.command(
        parsers,
        "attack",
        "Attack each image with DeepFool (multi-class, top-10 candidates, overshoot 0.02, at "
        "most 50 steps) and compare every method's map of the clean image with its map of the "
        "adversarial image: Pearson correlation, SSIM, IoU of the top regions and of the "
        "localization boxes, and whether each box still localizes the object. Class methods "
        "explain the clean class on the clean image and the adversarial class on the "
        "adversarial one (also: the clean class on both). Writes metrics.json, table.md, "
        "per_image.csv and figures/<image>.png (clean row, adversarial row, one column per "
        "method). Resumable; an image that cannot be read or attacked is a recorded failure "
        "(exit code 1).",
        EXAMPLE,
        run_attack_command,
    )
    cli_args.add_dataset_args(p)
    cli_args.add_model_args(p)
    cli_args.add_methods_args(p, DEFAULT_METHODS)
    a = p.add_argument_group("attack (DeepFool)")
    cli_args.option(a, "--candidates", 10, "top classes considered")
    cli_args.option(a, "--overshoot", 0.02, "overshoot eta")
    cli_args.option(a, "--max-iter", 50, "maximum steps")
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
    cli_args.option(s, "--top-fraction", 0.15, "share of pixels in the top regions compared")
    cli_args.option(s, "--iou", 0.5, "IoU for a box to localize")
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
    paired = "method the others are paired with in the comparison table"
    cli_args.option(s, "--reference", "eigencam", paired, metavar="METHOD")
    o, _ = cli_args.add_run_args(p, "eigencam-attack", 8)
    o.add_argument("--no-figures", action="store_true", help="do not write figures/")
    cli_args.option(o, "--tile", 224, "cell size of the figures")


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
    keys = {parse_spec(text).key for text in args.methods}
    chosen = thresholds_from(args.thresholds_from)
    settings = AttackSettings(
        candidates=args.candidates,
        overshoot=args.overshoot,
        max_iter=args.max_iter,
        box_threshold=args.box_threshold,
        # a localize run may list other methods
        method_thresholds={k: v for k, v in chosen.items() if k in keys},
        top_fraction=args.top_fraction,
        iou_threshold=args.iou,
        same_class=not args.no_same_class,
        noise_control=args.noise_control,
        seed=args.seed,
    )
    return common.run_benchmark(
        args,
        run_attack,
        settings=settings,
        figures=not args.no_figures,
        tile=args.tile,
        reference=args.reference,
    )
