"""What the commands make of the groups of :mod:`eigencam.cli.args`: the model, the explainers,
the dataset, the run options and provenance, the progress bar. The CLI stays a thin layer over
the API."""

from __future__ import annotations

import argparse
import ast
import importlib.util
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from eigencam import __version__
from eigencam.capture.reshape import RESHAPES, parse_reshape  # noqa: F401  (re-exported)
from eigencam.cli.listing import print_table  # noqa: F401  (re-exported)
from eigencam.errors import InvalidParameterError, MissingDependencyError, check
from eigencam.evaluation.datasets import Dataset, open_dataset, read_class_map, stratified
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
from eigencam.runs import RunOptions


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


def check_dependencies(model: str, *, parquet: bool = False, ray: bool = False) -> None:
    """Raise :class:`MissingDependencyError` for a package the run will need, before any model
    loads or any progress bar starts: pyarrow (``parquet``), Ray (``ray``), and the package of
    the model's family (timm, onnxruntime, ultralytics), found without importing them."""
    name = str(model).lower()
    yolo = name.endswith((".yaml", ".yml"))
    needed = [
        (parquet, "pyarrow", "pyarrow", "batch", "eigencam batch (Parquet shards)"),
        (ray, "ray", "ray[data]", "ray", "the Ray engine"),
        (name.startswith("timm:"), "timm", "timm", "timm", f"model {model!r}"),
        (name.endswith(".onnx"), "onnxruntime", "onnxruntime", "onnx", f"model {model!r}"),
        (yolo, "ultralytics", "ultralytics", "yolo", f"model {model!r}"),
    ]
    for wanted, module, package, extra, what in needed:
        if wanted and importlib.util.find_spec(module) is None:
            raise MissingDependencyError(package, extra, what)


def load_model_from_args(args: argparse.Namespace):
    """(LoadedModel, Preprocessing, device) from the model arguments; warnings go to stderr.
    ``--threads N`` (compute commands) sets torch's CPU threads first."""
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    options = parse_model_args(getattr(args, "model_arg", None) or [])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RandomWeightsWarning)
        loaded = load_model(args.model, weights=args.weights, device=device, **options)
    for w in caught:
        if issubclass(w.category, RandomWeightsWarning):
            print(f"eigencam: warning: {w.message}", file=sys.stderr)
    pre = loaded.preprocessing.with_overrides(
        input_size=input_size(args.input_size),
        mean=args.mean,
        std=args.std,
        resize=args.resize,
    )
    return loaded, pre, device


def input_size(values: Sequence[int] | None) -> tuple[int, int] | None:
    """``--input-size`` (N or H W) as (H, W)."""
    if values is not None and len(values) not in (1, 2):
        raise InvalidParameterError(f"--input-size takes N or H W, got {len(values)} values")
    return None if values is None else tuple((list(values) * 2)[:2])


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
    """The options the old flags set for one method: only flags given (not at their default),
    and a flag the method does not take is refused."""
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


def benchmark_explainers(args: argparse.Namespace, loaded: Any) -> dict[str, Explainer]:
    """{method key: explainer} of a benchmark's ``--methods``: each scores one map per image."""
    specs = [parse_spec(text) for text in args.methods]
    keys = [s.key for s in specs]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    check(not dupes, f"--methods lists {dupes} twice")
    explainers = {}
    for spec in specs:
        expl = build_explainer(spec, loaded.model, args.layer or loaded.target_layer)
        k = getattr(expl, "n_components", 1)
        check(
            k == 1 or bool(getattr(expl, "combine", None)),
            f"method {spec.key!r}: localization scores one map per image; with "
            f"n_components={k} add combine=sum or combine=energy",
        )
        explainers[spec.key] = expl
    return explainers


def run_info(
    args: argparse.Namespace, loaded: Any, device: Any, head: dict | None = None, **fields: Any
) -> dict[str, Any]:
    """The provenance a run records: version, command, ``head``, the model, ``fields``, device."""
    return {
        "eigencam_version": __version__,
        "command": args.command,
        **(head or {}),
        "model": loaded.name,
        "weights": args.weights,
        "pretrained": loaded.pretrained,
        **fields,
        "device": str(device),
    }


def preprocessing_info(pre: Any) -> dict[str, Any]:
    """The preprocessing as ``explain`` and ``compare`` record it (without the crop fraction)."""
    return {k: v for k, v in pre.describe().items() if k != "crop_fraction"}


def run_options(args: argparse.Namespace, device: Any, progress: Callable) -> RunOptions:
    """The :class:`~eigencam.runs.RunOptions` of the run group of the arguments."""
    return RunOptions(
        batch_size=args.batch_size,
        workers=args.workers,
        device=device,
        resume=args.resume,
        overwrite=args.overwrite,
        max_pixels=args.max_pixels,
        progress=progress,
    )


def read_dataset(args: argparse.Namespace, path: str) -> Dataset:
    """The whole dataset at ``path``, read with the layout options of the arguments."""
    return open_dataset(
        path,
        format=args.format,
        skip_bad=args.skip_bad,
        class_map=read_class_map(args.class_map) if args.class_map else None,
        synsets=args.synsets,
        annotations=args.annotations,
        images=args.images,
        image_set=args.image_set,
    )


def open_dataset_from_args(args: argparse.Namespace) -> Dataset:
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
        print(f"eigencam {args.command}: skipped {source}: {reason}", file=sys.stderr)
    return dataset


def run_benchmark(
    args: argparse.Namespace, evaluate: Callable[..., dict[str, Any]], **options: Any
) -> int:
    """Run a per-image benchmark (``run_attack``, ``run_faithfulness``) on the dataset, model
    and methods of the arguments; print its table and failures.

    Returns:
        The exit code: 1 when some image failed, else 0.
    """
    dataset = open_dataset_from_args(args)
    loaded, pre, device = load_model_from_args(args)
    explainers = benchmark_explainers(args, loaded)
    subset = {k: getattr(args, k) for k in ("per_class", "seed", "part", "limit")}
    info = run_info(args, loaded, device, {"argv": sys.argv[1:]}, subset=subset)
    with Progress(None, args.command, enabled=not args.quiet, min_items=2) as progress:
        metrics = evaluate(
            dataset,
            loaded.model,
            pre,
            explainers,
            args.out,
            run_info=info,
            labels=loaded.labels,
            run=run_options(args, device, progress),
            **options,
        )
    out = Path(args.out)
    sys.stdout.write((out / "table.md").read_text())
    print(f"-> {out / 'metrics.json'}, {out / 'table.md'}, {out / 'per_image.csv'}")
    for fail in metrics["failures"]:
        print(f"eigencam {args.command}: {fail['key']}: {fail['error']}", file=sys.stderr)
    return 1 if metrics["failures"] else 0


class Progress:
    """A tqdm progress bar on stderr with images/s, silent for a handful of images; a context
    manager that closes it.

    Called with a :class:`~eigencam.runs.loop.RunStats` (``48/96`` with ``resumed=48`` and
    ``failed=`` in the postfix), or as ``progress(done, failed)`` by callers that count
    themselves. Tasks whose batches are slow (attack, faithfulness: every method on every
    image) move it within a batch with :meth:`advance`, so the bar and its estimate move per
    image and method, not per batch.
    """

    #: tqdm's default layout, with the count shown whole while :meth:`advance` moves it in
    #: fractions of an image.
    FORMAT = "{l_bar}{bar}| {n:.0f}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"

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
                bar_format=self.FORMAT,
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

    def advance(self, images: float) -> None:
        """Move the bar by ``images`` (a fraction of an image allowed) before the batch's part
        is recorded; the next call with the run's counts settles the count."""
        if self.bar is not None:
            self.bar.update(images)
            self._last += images

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
