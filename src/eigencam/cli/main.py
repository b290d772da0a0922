"""The ``eigencam`` command: argument parsing and error reporting around the subcommands.

Only the module of the command being run is imported (each imports torch and the rest of the
library at its top), so ``eigencam --help`` and ``--version`` answer at once.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import sys
import traceback
from collections.abc import Sequence

from eigencam import __version__
from eigencam.errors import (
    BatchError,
    EigenCAMError,
    ModelForwardError,
    OutputError,
)

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

#: command -> (module that registers and runs it, one-line help), in help order.
COMMANDS: dict[str, tuple[str, str]] = {
    "explain": ("explain", "explain images: overlays, maps (.npy) and results.json"),
    "demo": ("explain", "explain the bundled sample photos with the embedded EfficientNet-Lite0"),
    "models": ("listing", "list model names"),
    "layers": ("info", "list candidate target layers of a model with their output shapes"),
    "methods": ("listing", "list explanation methods"),
    "compare": ("compare", "compare methods side by side: one figure grid per image"),
    "localize": (
        "localize",
        "weakly-supervised localization benchmark (paper's Table 1, MaxBoxAcc)",
    ),
    "localize-table": (
        "localize",
        "merge localize runs into one Table-1-style table (methods x models)",
    ),
    "attack": (
        "attack",
        "DeepFool adversarial examples: how much do the explanations change? (Figure 4)",
    ),
    "faithfulness": (
        "faithfulness",
        "faithfulness metrics of the maps: deletion/insertion AUC, average drop, ROAD",
    ),
    "batch": ("batch", "explain a dataset into Parquet shards (resumable; locally or on Ray)"),
}


def _command_of(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command``, that command's module registers its full arguments (the
    others are listed by name and help only). Without it, every command is registered."""
    parser = argparse.ArgumentParser(
        prog="eigencam",
        description="Gradient-free class activation maps (Eigen-CAM) and the CAMs it is "
        "compared with.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"eigencam {__version__}")
    parser.add_argument("--debug", action="store_true", help="print the full traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    parsers = {
        name: sub.add_parser(name, help=text, formatter_class=argparse.RawDescriptionHelpFormatter)
        for name, (_, text) in COMMANDS.items()
    }
    modules = {module for module, _ in COMMANDS.values()}
    if command is not None:
        modules = {COMMANDS[command][0]} if command in COMMANDS else set()
    for module in sorted(modules):
        importlib.import_module(f"eigencam.cli.{module}").register(parsers)
    return parser


#: Exit code 3: the machine, the disk or the model failed, not the command line.
ENVIRONMENT_ERRORS = (OutputError, ModelForwardError, BatchError)


def _report(args: argparse.Namespace, err: BaseException, code: int) -> int:
    """One line on stderr (the traceback too with --debug); returns the exit code."""
    if args.debug:
        traceback.print_exception(err)
    hint = "" if args.debug or code != 3 else " (--debug shows the traceback)"
    print(f"eigencam {args.command}: error: {err}{hint}", file=sys.stderr)
    return code


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f" (choose from {', '.join(choices)})"


def _unrecognized(parser: argparse.ArgumentParser, command: str, extras: list[str]) -> None:
    """Exit 2 with the subcommand's usage, naming each unknown option's closest spelling."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    subparser = sub.choices[command]
    options = [o for o in subparser._option_string_actions if o.startswith("--")]
    hints = []
    for extra in extras:
        name = extra.split("=", 1)[0]
        if name.startswith("--"):
            close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
            if close:
                hints.append(f"{name}: did you mean {close[0]}?")
    hint = f" ({'; '.join(hints)})" if hints else ""
    subparser.error(f"unrecognized arguments: {' '.join(extras)}{hint}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 some inputs failed, 2 usage error,
    3 environment or model failure, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_of(argv)
    parser = build_parser(command if command in COMMANDS else "")
    if command is not None and command not in COMMANDS:
        parser.error(f"unknown command {command!r}{_did_you_mean(command, COMMANDS)}")
    args, extras = parser.parse_known_args(argv)
    if extras:
        _unrecognized(parser, args.command, extras)
    try:
        return int(args.run(args))
    except ENVIRONMENT_ERRORS as err:
        return _report(args, err, 3)
    except (EigenCAMError, FileNotFoundError, FileExistsError) as err:
        return _report(args, err, 2)
    except KeyboardInterrupt:
        print("eigencam: interrupted; finished results were kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
