"""Arguments and helpers shared by the commands. The CLI stays a thin layer over the API."""

from __future__ import annotations

import argparse
import ast
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from eigencam.capture.reshape import RESHAPES, parse_reshape  # noqa: F401  (re-exported)
from eigencam.errors import EigenCAMError, InvalidParameterError
from eigencam.io.images import DEFAULT_MAX_PIXELS
from eigencam.methods import (
    Explainer,
    MethodSpec,
    build_explainer,
    get_method,
    parse_spec,
    parse_value,
)
from eigencam.methods.base import param_names
from eigencam.models import RandomWeightsWarning, load_model

DEVICE_HELP = "cpu, cuda, cuda:1... (default: cuda when available, else cpu)"


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """--model, --weights and the preprocessing overrides."""
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
    g.add_argument(
        "--mean", type=float, nargs=3, metavar=("R", "G", "B"), help="normalisation mean"
    )
    g.add_argument("--std", type=float, nargs=3, metavar=("R", "G", "B"), help="normalisation std")
    g.add_argument(
        "--resize",
        choices=["stretch", "center-crop", "letterbox"],
        help="stretch the whole image to the input size, take the centre crop, or letterbox "
        "(keep the aspect ratio, pad; detectors' default)",
    )
    g.add_argument("--device", default=None, help=DEVICE_HELP)


def resolve_device(name: str | None):
    import torch

    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise InvalidParameterError(f"--device {name!r} is not a device name ({err})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidParameterError(
            f"--device {name}: CUDA is not available on this machine; use --device cpu"
        )
    return device


def load_model_from_args(args: argparse.Namespace):
    """(LoadedModel, Preprocessing, device) from the model arguments; warnings go to stderr."""

    device = resolve_device(args.device)
    options = parse_model_args(getattr(args, "model_arg", None) or [])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RandomWeightsWarning)
        loaded = load_model(args.model, weights=args.weights, device=device, **options)
    for w in caught:
        if issubclass(w.category, RandomWeightsWarning):
            print(f"eigencam: warning: {w.message}", file=sys.stderr)
    input_size = args.input_size
    if input_size is not None and len(input_size) not in (1, 2):
        raise InvalidParameterError(f"--input-size takes N or H W, got {len(input_size)} values")
    pre = loaded.preprocessing.with_overrides(
        input_size=None if input_size is None else (input_size * 2)[:2],
        mean=args.mean,
        std=args.std,
        resize=args.resize,
    )
    return loaded, pre, device


def parse_model_args(items: Sequence[str]) -> dict[str, Any]:
    """``["image_size=64", "pretrained=true"]`` -> ``{"image_size": 64, "pretrained": True}``.

    Values follow the one value grammar of specs (:func:`~eigencam.methods.parse_value`:
    ``true``/``false``, ``none``, numbers, ``a+b`` lists); a value that starts as a Python
    tuple, list, dict or quoted string is read as that literal.
    """
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise InvalidParameterError(
                f"--model-arg takes KEY=VALUE with a Python name as KEY, got {item!r}"
            )
        options[key.strip()] = _model_arg_value(value.strip())
    return options


def _model_arg_value(text: str) -> Any:
    if text[:1] in ("(", "[", "{", "'", '"'):
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            pass
    return parse_value(text)


#: The old method flags, kept as aliases of spec options: flag attribute -> (option, default).
METHOD_FLAGS = {
    "components": ("n_components", 1),
    "center": ("center", False),
    "solver": ("solver", "auto"),
    "eigen_smooth": ("eigen_smooth", False),
}


def method_flags(args: argparse.Namespace, spec: MethodSpec) -> dict[str, Any]:
    """The options the old flags (``--components``, ``--center``, ``--solver``,
    ``--eigen-smooth``) set for one method: only flags given (not at their default), and a
    flag the method does not take is refused."""
    accepted = param_names(get_method(spec.name))
    options = {}
    for flag, (option, default) in METHOD_FLAGS.items():
        value = getattr(args, flag, default)
        if value == default:
            continue
        if option not in accepted:
            raise InvalidParameterError(f"--{flag.replace('_', '-')} does not apply to {spec.name}")
        options[option] = value
    return options


def explainers_from_args(
    specs: Sequence[str], args: argparse.Namespace, loaded: Any
) -> dict[str, Explainer]:
    """Spec key -> explainer for ``--method`` / ``--methods`` specs (``name[:key=value...]``),
    with ``--layer``, ``--reshape`` and the old method flags applied where they fit.

    With one method, a flag or ``--layer``/``--reshape`` it cannot use is refused; with
    several, each method takes what applies to it.
    """
    reshape = parse_reshape(getattr(args, "reshape", None))
    layer = getattr(args, "layer", None)
    single = len(specs) == 1
    explainers: dict[str, Explainer] = {}
    for text in specs:
        spec = parse_spec(text)
        cls = get_method(spec.name)
        if spec.key in explainers:
            raise InvalidParameterError(f"--methods lists {spec.key!r} twice")
        flags = method_flags(args, spec) if single else {}
        if single and not cls.uses_layer and layer not in (None, "auto"):
            raise InvalidParameterError(
                f"{spec.name} explains the input pixels; --layer does not apply"
            )
        if single and reshape is not None and "reshape_transform" not in param_names(cls):
            raise InvalidParameterError(
                f"{spec.name} does not take a reshape transform (--reshape)"
            )
        explainers[spec.key] = build_explainer(
            MethodSpec(spec.key, spec.name, {**flags, **spec.options}),
            loaded.model,
            layer or loaded.target_layer,
            reshape_transform=reshape,
        )
    return explainers


def add_reshape_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reshape",
        default=None,
        metavar="KIND",
        help="reshape the layer output into maps: tokens (ViT tokens, prefix tokens guessed), "
        "tokens:N (N prefix tokens), channels-last (B, h, w, C), pyramid (dict/list of maps "
        "from a detector backbone); default: the model family's (see docs/models.md)",
    )


def add_batch_args(parser: argparse.ArgumentParser, batch_size: int = 8) -> None:
    g = parser.add_argument_group("throughput")
    g.add_argument(
        "--batch-size",
        type=int,
        default=batch_size,
        help="images per forward pass (default: %(default)s)",
    )
    g.add_argument(
        "--workers", type=int, default=2, help="decoding/writing threads (default: %(default)s)"
    )
    g.add_argument(
        "--max-pixels",
        type=pixel_limit,
        default=DEFAULT_MAX_PIXELS,
        help="refuse larger images, a decompression-bomb guard; replaces Pillow's own limit "
        "(default: %(default)s)",
    )
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def pixel_limit(value: str) -> int:
    """``--max-pixels``: a whole number of pixels >= 1 (argparse reports a usage error)."""
    try:
        pixels = int(value)
    except ValueError:
        pixels = 0
    if pixels < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of pixels >= 1, got {value!r}")
    return pixels


def add_resume_args(group: Any) -> None:
    """``--resume`` / ``--overwrite``: what to do with a run already in ``--out``."""
    how = group.add_mutually_exclusive_group()
    how.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out (after a crash, kill or Ctrl-C), skipping finished images",
    )
    how.add_argument(
        "--overwrite", action="store_true", help="discard the run already in --out and start again"
    )


def method_spec(value: str) -> str:
    """``--method``: a spec ``name[:key=value...]`` of a registered method (checked now)."""
    try:
        get_method(parse_spec(value).name)
    except EigenCAMError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return value.strip()


def comma_list(value: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


class Progress:
    """A tqdm progress bar on stderr with images/s, silent for a handful of images.

    Called with a :class:`~eigencam.runs.loop.RunStats` (``48/96`` with ``resumed=48`` and
    ``failed=`` in the postfix), or as ``progress(done, failed)`` by callers that count
    themselves.
    """

    def __init__(
        self, total: int | None, desc: str, enabled: bool = True, min_items: int = 4
    ) -> None:
        self.bar = None
        self.desc, self.enabled, self.min_items = desc, enabled, min_items
        self._last = 0
        if total is not None:
            self._open(total, 0)

    def _open(self, total: int, initial: int) -> None:
        if self.enabled and total >= self.min_items:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                initial=initial,
                desc=self.desc,
                unit="img",
                file=sys.stderr,
                dynamic_ncols=True,
            )
        self._last = initial

    def __call__(self, done: Any, failed: int | None = None) -> None:
        postfix = {}
        if failed is None:  # a RunStats
            stats = done
            if self.bar is None and self._last == 0 and stats.done == stats.resumed:
                self._open(stats.total, stats.resumed)
            done, failed = stats.done, stats.failed
            if stats.resumed:
                postfix["resumed"] = stats.resumed
        if self.bar is None:
            return
        self.bar.update(done - self._last)
        self._last = done
        if failed:
            postfix["failed"] = failed
        if postfix:
            self.bar.set_postfix(postfix)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def print_table(rows: Sequence[Sequence[Any]], header: Sequence[str], file=None) -> None:
    """A plain aligned text table."""
    file = file or sys.stdout
    cols = [list(map(str, col)) for col in zip(header, *rows)] if rows else [[h] for h in header]
    widths = [max(len(c) for c in col) for col in cols]
    lines = [header, *rows]
    for i, row in enumerate(lines):
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip(), file=file)
        if i == 0:
            print("  ".join("-" * w for w in widths), file=file)
