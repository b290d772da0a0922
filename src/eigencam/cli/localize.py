"""``eigencam localize`` and ``eigencam localize-table``: the weakly-supervised localization
benchmark (the paper's Table 1 and Choe et al.'s MaxBoxAcc) as commands."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from eigencam.cli import args as cli_args
from eigencam.cli import common
from eigencam.errors import InvalidParameterError, check_range
from eigencam.evaluation.localization import LocalizeSettings, localize
from eigencam.evaluation.metrics.protocols import parse_grid
from eigencam.evaluation.report import table_markdown
from eigencam.io.outputs import atomic_write

LOCALIZE_EXAMPLE = """\
examples:
  eigencam localize ../shared/data/imagenet-val-dev --methods eigencam --out loc/
  eigencam localize ILSVRC2012/ --synsets LOC_synset_mapping.txt --model resnet50 \\
      --weights resnet50.pth --methods eigencam,cam,gradcam --batch-size 32 --out loc-r50/
  # thresholds chosen on one half, reported on the other:
  eigencam localize DEV --part 1/2 --out half1/
  eigencam localize DEV --part 2/2 --calibrate-on half1/ --out half2/
  # Eigen-CAM variants side by side (option=value after the name):
  eigencam localize DEV --methods eigencam,eigencam:center=true,eigencam:flip=true
  eigencam localize-table loc-r50/ loc-vgg/ --out table.md
"""

TABLE_EXAMPLE = """\
example:
  eigencam localize-table runs/resnet50 runs/vgg16 runs/efficientnet --out table1.md
"""


def register(parsers: dict[str, argparse.ArgumentParser]) -> None:
    p = cli_args.command(
        parsers,
        "localize",
        "Evaluate maps as object localizers on a dataset with ground-truth boxes (ILSVRC val, "
        "PASCAL VOC, COCO, CUB, or an annotations.json). Writes metrics.json, table.md, "
        "per_image.csv, ground_truth.csv and report.html. See docs/localization.md for the "
        "protocols.",
        LOCALIZE_EXAMPLE,
        run_localize,
    )
    cli_args.add_dataset_args(p, "dataset", stratified=False)
    cli_args.add_model_args(p)
    cli_args.add_methods_args(p, "eigencam")
    pr = p.add_argument_group("protocol")
    sweep = "paper protocol sweep, start:stop:step or a,b,c"
    cli_args.option(pr, "--thresholds", "0.05:0.15:0.01", sweep, metavar="GRID")
    pr.add_argument(
        "--box-grid",
        default="0:0.99:0.01",
        metavar="GRID",
        help="MaxBoxAcc threshold grid (default: %(default)s, Choe et al.)",
    )
    cli_args.option(pr, "--iou", 0.5, "IoU for a correct box")
    cli_args.option(pr, "--v2-ious", "0.3,0.5,0.7", "MaxBoxAccV2 IoU thresholds", metavar="LIST")
    cli_args.option(pr, "--connectivity", 8, "connected components", choices=[4, 8])
    pr.add_argument(
        "--calibrate-on",
        metavar="DIR",
        help="choose thresholds on held-out data: a finished localize run folder, or a "
        "dataset evaluated first into OUT/calibration",
    )
    o, t = cli_args.add_run_args(p, "eigencam-localize", 16)
    o.add_argument("--name", metavar="LABEL", help="column name in the tables (default: model)")
    gallery = "best and worst cases per method in report.html"
    cli_args.option(o, "--gallery", 4, gallery, metavar="K")
    o.add_argument(
        "--csv-thresholds",
        default="paper",
        choices=["paper", "all"],
        help="thresholds in per_image.csv: the paper's sweep or the whole grid",
    )
    t.add_argument(
        "--score-workers",
        type=int,
        default=1,
        metavar="N",
        help="processes turning maps into boxes, the costly step on CPU (default: %(default)s: "
        "a background thread; use most spare cores on a big machine)",
    )

    t = cli_args.command(
        parsers,
        "localize-table",
        "Read the metrics.json of several `eigencam localize` runs (one per model) and write "
        "the tables with one column per run.",
        TABLE_EXAMPLE,
        run_table,
    )
    t.add_argument("runs", nargs="+", metavar="DIR", help="localize output folders")
    t.add_argument("--out", metavar="FILE", help="write the markdown here (default: stdout)")


def run_localize(args: argparse.Namespace) -> int:
    check_range("--batch-size", args.batch_size, 1)
    check_range("--gallery", args.gallery, 0)
    settings = LocalizeSettings(
        thresholds=parse_grid(args.thresholds),
        box_grid=parse_grid(args.box_grid),
        iou_threshold=args.iou,
        v2_ious=tuple(float(v) for v in cli_args.comma_list(args.v2_ious)),
        connectivity=args.connectivity,
    )
    dataset = common.open_dataset_from_args(args)
    loaded, pre, device = common.load_model_from_args(args)
    explainers = common.benchmark_explainers(args, loaded)
    calibration = None
    if args.calibrate_on:
        cal = Path(args.calibrate_on)
        if (cal / "metrics.json").is_file() or (cal.suffix == ".json" and cal.is_file()):
            calibration = cal
        else:
            calibration = common.read_dataset(args, args.calibrate_on)
    head = {"argv": sys.argv[1:], "name": args.name or loaded.name}
    info = common.run_info(args, loaded, device, head, part=args.part, limit=args.limit)
    quiet = args.quiet
    with (
        common.Progress(None, "localize", enabled=not quiet) as progress,
        common.Progress(None, "calibrate", enabled=not quiet) as cal_progress,
    ):
        metrics = localize(
            dataset,
            loaded.model,
            pre,
            explainers,
            args.out,
            settings=settings,
            calibration=calibration,
            run_info=info,
            labels=loaded.labels,
            run=common.run_options(args, device, progress),
            gallery=args.gallery,
            csv_thresholds=args.csv_thresholds,
            calibration_progress=cal_progress,
            score_workers=args.score_workers,
        )
    _print_summary(metrics)
    out = Path(args.out)
    print(f"-> {out / 'metrics.json'}, {out / 'table.md'}, {out / 'report.html'}")
    runtime_skips = [s for s in metrics["dataset"]["skipped"] if s not in dataset.skipped]
    for key, reason in runtime_skips:
        print(f"eigencam localize: {key}: {reason}", file=sys.stderr)
    return 1 if len(metrics["dataset"]["skipped"]) > len(dataset.skipped) else 0


SUMMARY_HEADER = (
    "method",
    "top1 err",
    "top5 err",
    "GT-known err",
    "class-indep err",
    "MaxBoxAcc",
    "MaxBoxAccV2",
    "thr",
    "n",
)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _pct_se(v: float | None, n: int) -> str:
    """A proportion in % with its standard error, sqrt(p (1 - p) / n)."""
    if v is None or not n:
        return _pct(v)
    return f"{100 * v:.1f} ±{100 * math.sqrt(v * (1 - v) / n):.1f}"


def _print_summary(metrics: dict) -> None:
    rows = []
    for key, m in metrics["methods"].items():
        a, chosen = m["paper"]["at_chosen"], m["paper"]["chosen_threshold"]
        images = m["paper"].get("images") or {}
        n, n_all = int(images.get("labelled", 0)), int(images.get("all", 0))
        errors = ("top1_loc_error", "top5_loc_error", "gt_known_error")
        rows.append(
            [
                key,
                *(_pct_se(a[e], n) for e in errors),
                _pct_se(a["class_independent_error"], n_all),
                _pct_se(m["maxboxacc"]["value"], n),
                _pct_se(m["maxboxacc_v2"]["value"], n),
                "-" if chosen is None else f"{chosen:.2f}",
                n,
            ]
        )
    cls = metrics["classification"]
    print(
        f"{cls['images']} images, top-1 accuracy {_pct(cls['top1_acc'])}%, "
        f"top-5 {_pct(cls['top5_acc'])}%"
    )
    common.print_table(rows, SUMMARY_HEADER)
    print(
        "(% of the n labelled images, class-indep err of all images; ± one standard error "
        "of a proportion, sqrt(p (1 - p) / n))"
    )


def run_table(args: argparse.Namespace) -> int:
    runs = []
    for d in args.runs:
        path = Path(d)
        f = path / "metrics.json" if path.is_dir() else path
        if not f.is_file():
            raise FileNotFoundError(f"{d}: no metrics.json (run `eigencam localize` first)")
        try:
            metrics = json.loads(f.read_text())
        except json.JSONDecodeError as err:
            raise InvalidParameterError(f"{f}: not valid JSON ({err})") from None
        runs.append({**metrics, "folder": f.parent.name})
    text = table_markdown(runs)
    if args.out:
        atomic_write(args.out, lambda fh: fh.write(text), mode="w")
        print(f"-> {args.out}")
    else:
        sys.stdout.write(text)
    return 0
