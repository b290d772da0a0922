"""``eigencam batch``: explain a dataset into Parquet shards, locally or on a Ray cluster."""

from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import fields
from pathlib import Path

from eigencam.batch.engines import DEFAULT_RAY_TIMEOUT, ENGINES
from eigencam.batch.inputs import DEFAULT_SHARD_SIZE, INPUT_FORMATS, plan_inputs
from eigencam.batch.run import run_batch
from eigencam.batch.shards import DEFAULT_SAVE, SAVE_KINDS
from eigencam.batch.worker import DEFAULT_THRESHOLD, BatchSpec
from eigencam.cli import args as cli_args
from eigencam.cli import common
from eigencam.errors import BatchError, check
from eigencam.methods import parse_spec
from eigencam.models import RandomWeightsWarning, model_entry

BATCH_EXAMPLE = """\
examples:
  eigencam batch photos/ --out runs/photos                  # one process, all cores
  eigencam batch 'data/**/*.jpg' --save maps,boxes,overlays --out runs/overlays
  eigencam batch paths.txt --model resnet50 --weights resnet50.pth --batch-size 64
  eigencam batch images.parquet --column image --id-column key --out runs/pq
  eigencam batch 'shards/train-{0000..0099}.tar' --engine ray --out /shared/runs/wds
  # an existing cluster (ray start --head on the head node), one GPU per actor:
  eigencam batch /shared/ilsvrc/val --engine ray --ray-address auto \\
      --num-gpus-per-worker 1 --num-cpus-per-worker 8 --decode-threads 8 \\
      --batch-size 128 --out /shared/runs/ilsvrc-val
A killed run resumes when the same command is run again (finished shards are kept).
See docs/scale.md.
"""


def register(parsers: dict[str, argparse.ArgumentParser]) -> None:
    p = cli_args.command(
        parsers,
        "batch",
        "Explain every image of a folder, glob, list of paths, Parquet files or WebDataset tars. "
        "Writes one Parquet file per shard (id, model, layer, method, top-5 classes, explained "
        "variance, the box at the threshold, the map as uint8 at the layer's resolution), "
        "overlays when asked, and manifest.json (versions, arguments, counts, failures). Shards "
        "are written atomically: rerun the same command after a crash to finish the run.",
        BATCH_EXAMPLE,
        run_batch_command,
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image files, folders or globs; a .txt file of paths; .parquet files; .tar "
        "WebDataset shards (brace patterns such as train-{0000..0099}.tar)",
    )
    i = p.add_argument_group("input")
    i.add_argument(
        "--input-format",
        default="auto",
        choices=INPUT_FORMATS,
        help="input kind (default: recognised from the names)",
    )
    i.add_argument(
        "--column",
        metavar="NAME",
        help="Parquet: the column of image bytes, image structs or paths (default: guessed); "
        "WebDataset: the image member's extension (default: jpg, png, ... whichever is there)",
    )
    i.add_argument("--id-column", metavar="NAME", help="Parquet: a column of image ids")
    cli_args.option(
        i,
        "--shard-size",
        DEFAULT_SHARD_SIZE,
        "images per output shard (paths, Parquet rows; a tar is one shard)",
        metavar="N",
    )
    cli_args.add_model_args(p)
    cli_args.add_method_args(p)
    o, t = cli_args.add_run_args(p, "eigencam-batch", 32, resume=False, workers=False)
    o.add_argument(
        "--save",
        type=cli_args.comma_list,
        default=list(DEFAULT_SAVE),
        metavar="LIST",
        help=f"what to store: {', '.join(SAVE_KINDS)} (maps: uint8 at the layer's resolution; "
        "map-png: 8-bit PNG at the original size; overlays: PNG files) "
        "(default: %(default)s)",
    )
    o.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        metavar="TAU",
        help="box threshold, a fraction of the map's maximum (default: %(default)s, the best "
        "for Eigen-CAM on the ILSVRC dev set; docs/scale.md)",
    )
    cli_args.option(o, "--colormap", "jet", "overlay colormap")
    cli_args.option(o, "--alpha", 0.5, "overlay opacity")
    cli_args.option(t, "--decode-threads", 2, "image decoding threads per worker", metavar="N")
    e = p.add_argument_group("engine")
    cli_args.option(
        e, "--engine", "local", "local: this process; ray: a Ray actor pool", choices=ENGINES
    )
    e.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="an existing Ray cluster (auto, host:6379, ray://host:10001); default: start a "
        "local Ray for the run",
    )
    cli_args.option(
        e,
        "--ray-timeout",
        DEFAULT_RAY_TIMEOUT,
        "how long to wait for the cluster at --ray-address to answer",
        metavar="SECONDS",
    )
    e.add_argument(
        "--num-workers",
        type=int,
        metavar="N",
        help="Ray actors holding the model (default: as many as the CPUs, or the GPUs with "
        "--num-gpus-per-worker, allow)",
    )
    cli_args.option(e, "--num-cpus-per-worker", 1.0, "CPUs per Ray actor", metavar="C")
    e.add_argument(
        "--num-gpus-per-worker",
        type=float,
        default=0.0,
        metavar="G",
        help="GPUs per Ray actor, fractions share a GPU (default: %(default)s: CPU)",
    )
    e.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch threads per worker on CPU (default: local: all cores; ray: "
        "--num-cpus-per-worker). CPU results depend on it in the last bits",
    )


def build_spec(args: argparse.Namespace) -> BatchSpec:
    """The :class:`~eigencam.batch.BatchSpec` of the command line."""
    spec = parse_spec(args.method)
    size = common.input_size(args.input_size)
    converted = {
        "model_args": common.parse_model_args(args.model_arg),
        "input_size": size,
        "mean": None if args.mean is None else tuple(args.mean),
        "std": None if args.std is None else tuple(args.std),
        "method": spec.name,
        "method_options": {**common.method_flags(args, spec), **spec.options},
        "save": tuple(args.save),
    }
    # Every other field is the option of the same name.
    same = {f.name: getattr(args, f.name) for f in fields(BatchSpec) if f.name not in converted}
    return BatchSpec(**same, **converted).validate()


def run_batch_command(args: argparse.Namespace) -> int:
    spec = build_spec(args)
    check(
        args.engine == "ray"
        or not (args.ray_address or args.num_workers or args.num_gpus_per_worker),
        "--ray-address, --num-workers and --num-gpus-per-worker apply to --engine ray",
    )
    common.check_dependencies(spec.model, parquet=True, ray=args.engine == "ray")
    plan = plan_inputs(
        args.inputs,
        input_format=args.input_format,
        shard_size=args.shard_size,
        column=args.column,
        id_column=args.id_column,
    )
    for item, reason in plan.unmatched:
        print(f"eigencam: {item}: {reason}", file=sys.stderr)
    total = plan.items
    bar = common.Progress(
        total if total is not None else len(plan.shards), "batch", enabled=not args.quiet
    )
    state = {"done": 0, "failed": 0}

    def progress(summary) -> None:
        state["done"] += summary.rows if total is not None else 1
        state["failed"] += summary.failed
        bar(state["done"], state["failed"])

    if not (model_entry(spec.model).pretrained or spec.weights):
        print(
            f"eigencam: warning: {args.model}: no weights given, the model has random weights; "
            "its maps show the architecture, not what a trained model looks at (--weights FILE)",
            file=sys.stderr,
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RandomWeightsWarning)
            report = run_batch(
                plan,
                args.out,
                spec,
                engine=args.engine,
                ray_address=args.ray_address,
                ray_timeout=args.ray_timeout,
                num_workers=args.num_workers,
                num_cpus_per_worker=args.num_cpus_per_worker,
                num_gpus_per_worker=args.num_gpus_per_worker,
                progress=progress,
                command=["eigencam", *sys.argv[1:]] if sys.argv else None,
            )
    except BatchError as err:  # the model, the cluster or the disk: an environment failure
        print(f"eigencam batch: error: {err}", file=sys.stderr)
        return 3
    finally:
        bar.close()
    counts = report.counts
    for f in report.manifest["failures"][:10]:
        print(f"eigencam: {f['id']}: {f['error']}", file=sys.stderr)
    if counts["failed"] > 10:
        print(
            f"eigencam: ... {counts['failed'] - 10} more failures (manifest.json, rows with "
            "status 'error')",
            file=sys.stderr,
        )
    run = report.manifest["runs"][-1]
    rate = run["images_per_second"] or 0.0
    print(
        f"{counts['images']} image(s) in {counts['shards_done']}/{counts['shards']} shard(s): "
        f"{counts['ok']} explained, {counts['failed']} failed; this run computed "
        f"{run['shards_computed']} shard(s) ({rate:.1f} img/s), skipped {report.skipped} "
        f"finished -> {Path(args.out) / 'manifest.json'}"
    )
    return 1 if counts["failed"] or counts["unmatched_inputs"] else 0
