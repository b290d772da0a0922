"""The ``eigencam`` command: argument parsing and error reporting around the subcommands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

EXAMPLES = """\
examples:
  eigencam demo                                  # embedded model on the bundled photos
  eigencam explain photo.jpg --out maps/
  eigencam layers resnet50
  eigencam methods
  eigencam compare photo.jpg --methods eigencam,gradcam,cnnfixations --targets top3
  eigencam localize ../shared/data/imagenet-val-dev --methods eigencam --out loc/
  eigencam attack ../shared/data/imagenet-val-dev --per-class 5 --out attack/
  eigencam faithfulness ../shared/data/imagenet-val-dev --per-class 2 --out faith/
  eigencam batch photos/ --out runs/photos --engine ray     # Parquet shards, resumable
"""


def build_parser() -> argparse.ArgumentParser:
    from eigencam import __version__
    from eigencam.cli import attack, batch, compare, explain, faithfulness, info, localize

    parser = argparse.ArgumentParser(
        prog="eigencam",
        description="Gradient-free class activation maps (Eigen-CAM) and the CAMs it is "
        "compared with.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"eigencam {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in (explain, info, compare, localize, attack, faithfulness, batch):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 some inputs failed, 2 usage error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from eigencam.errors import EigenCAMError

    try:
        return int(args.run(args))
    except (EigenCAMError, ValueError, TypeError, FileNotFoundError, FileExistsError) as err:
        print(f"eigencam {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("eigencam: interrupted; finished results were kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
