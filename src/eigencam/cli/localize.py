"""``eigencam localize`` and ``eigencam localize-table``: the weakly-supervised localization
benchmark (the paper's Table 1 and Choe et al.'s MaxBoxAcc) as commands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from eigencam import __version__
from eigencam.cli.common import (
    Progress,
    add_batch_args,
    add_model_args,
    add_resume_args,
    comma_list,
    load_model_from_args,
    print_table,
)
from eigencam.cli.dataset_args import (
    add_dataset_args,
    add_methods_args,
    open_dataset_from_args,
    read_dataset,
)
from eigencam.errors import InvalidParameterError, check, check_range
from eigencam.evaluation.localization import LocalizeSettings, localize
from eigencam.evaluation.metrics.protocols import parse_grid
from eigencam.evaluation.report import table_markdown
from eigencam.io.outputs import atomic_write
from eigencam.methods import build_explainer, parse_spec
from eigencam.runs import RunOptions

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


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "localize",
        help="weakly-supervised localization benchmark (paper's Table 1, MaxBoxAcc)",
        description="Evaluate maps as object localizers on a dataset with ground-truth boxes "
        "(ILSVRC val, PASCAL VOC, COCO, CUB, or an annotations.json). Writes metrics.json, "
        "table.md, per_image.csv, ground_truth.csv and report.html. See docs/localization.md "
        "for the protocols.",
        epilog=LOCALIZE_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_dataset_args(p, "dataset", stratified=False)
    add_model_args(p)
    add_methods_args(p, "eigencam")
    pr = p.add_argument_group("protocol")
    pr.add_argument(
        "--thresholds",
        default="0.05:0.15:0.01",
        metavar="GRID",
        help="paper protocol sweep, start:stop:step or a,b,c (default: %(default)s)",
    )
    pr.add_argument(
        "--box-grid",
        default="0:0.99:0.01",
        metavar="GRID",
        help="MaxBoxAcc threshold grid (default: %(default)s, Choe et al.)",
    )
    pr.add_argument(
        "--iou", type=float, default=0.5, help="IoU for a correct box (default: %(default)s)"
    )
    pr.add_argument(
        "--v2-ious",
        default="0.3,0.5,0.7",
        metavar="LIST",
        help="MaxBoxAccV2 IoU thresholds (default: %(default)s)",
    )
    pr.add_argument(
        "--connectivity",
        type=int,
        default=8,
        choices=[4, 8],
        help="connected components (default: %(default)s)",
    )
    pr.add_argument(
        "--calibrate-on",
        metavar="DIR",
        help="choose thresholds on held-out data: a finished localize run folder, or a "
        "dataset evaluated first into OUT/calibration",
    )
    o = p.add_argument_group("output")
    o.add_argument("--out", default="eigencam-localize", metavar="DIR", help="output folder")
    add_resume_args(o)
    o.add_argument("--name", metavar="LABEL", help="column name in the tables (default: model)")
    o.add_argument(
        "--gallery",
        type=int,
        default=4,
        metavar="K",
        help="best and worst cases per method in report.html (default: %(default)s)",
    )
    o.add_argument(
        "--csv-thresholds",
        default="paper",
        choices=["paper", "all"],
        help="thresholds in per_image.csv: the paper's sweep or the whole grid",
    )
    add_batch_args(p, batch_size=16)
    p.add_argument(
        "--score-workers",
        type=int,
        default=1,
        metavar="N",
        help="processes turning maps into boxes, the costly step on CPU (default: %(default)s: "
        "a background thread; use most spare cores on a big machine)",
    )
    p.set_defaults(run=run_localize)

    t = sub.add_parser(
        "localize-table",
        help="merge localize runs into one Table-1-style table (methods x models)",
        description="Read the metrics.json of several `eigencam localize` runs (one per model) "
        "and write the tables with one column per run.",
        epilog=TABLE_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("runs", nargs="+", metavar="DIR", help="localize output folders")
    t.add_argument("--out", metavar="FILE", help="write the markdown here (default: stdout)")
    t.set_defaults(run=run_table)


def _settings(args: argparse.Namespace) -> LocalizeSettings:
    return LocalizeSettings(
        thresholds=parse_grid(args.thresholds),
        box_grid=parse_grid(args.box_grid),
        iou_threshold=args.iou,
        v2_ious=tuple(float(v) for v in comma_list(args.v2_ious)),
        connectivity=args.connectivity,
    )


def build_explainers(args: argparse.Namespace, loaded) -> dict:
    """{method key: explainer} from ``--methods`` (each ``name[:option=value...]``)."""
    specs = [parse_spec(text) for text in args.methods]
    keys = [s.key for s in specs]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    check(not dupes, f"--methods lists {dupes} twice")
    layer = args.layer or loaded.target_layer
    explainers = {}
    for spec in specs:
        expl = build_explainer(spec, loaded.model, layer)
        k = getattr(expl, "n_components", 1)
        check(
            k == 1 or bool(getattr(expl, "combine", None)),
            f"method {spec.key!r}: localization scores one map per image; with "
            f"n_components={k} add combine=sum or combine=energy",
        )
        explainers[spec.key] = expl
    return explainers


def run_localize(args: argparse.Namespace) -> int:
    check_range("--batch-size", args.batch_size, 1)
    check_range("--gallery", args.gallery, 0)
    settings = _settings(args)
    dataset = open_dataset_from_args(args, "localize")
    loaded, pre, device = load_model_from_args(args)
    explainers = build_explainers(args, loaded)
    calibration = None
    if args.calibrate_on:
        cal = Path(args.calibrate_on)
        if (cal / "metrics.json").is_file() or (cal.suffix == ".json" and cal.is_file()):
            calibration = cal
        else:
            calibration = read_dataset(args, args.calibrate_on)
    run_info = {
        "eigencam_version": __version__,
        "command": "localize",
        "argv": sys.argv[1:],
        "name": args.name or loaded.name,
        "model": loaded.name,
        "weights": args.weights,
        "pretrained": loaded.pretrained,
        "part": args.part,
        "limit": args.limit,
        "device": str(device),
    }
    progress = Progress(None, "localize", enabled=not args.quiet)
    cal_progress = None
    if calibration is not None and not isinstance(calibration, Path):
        cal_progress = Progress(None, "calibrate", enabled=not args.quiet)
    run = RunOptions(
        batch_size=args.batch_size,
        workers=args.workers,
        device=device,
        resume=args.resume,
        overwrite=args.overwrite,
        max_pixels=args.max_pixels,
        progress=progress,
    )
    try:
        metrics = localize(
            dataset,
            loaded.model,
            pre,
            explainers,
            args.out,
            settings=settings,
            calibration=calibration,
            run_info=run_info,
            labels=loaded.labels,
            run=run,
            gallery=args.gallery,
            csv_thresholds=args.csv_thresholds,
            calibration_progress=cal_progress,
            score_workers=args.score_workers,
        )
    finally:
        progress.close()
        if cal_progress is not None:
            cal_progress.close()
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
)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _print_summary(metrics: dict) -> None:
    rows = []
    for key, m in metrics["methods"].items():
        a, chosen = m["paper"]["at_chosen"], m["paper"]["chosen_threshold"]
        errors = ("top1_loc_error", "top5_loc_error", "gt_known_error", "class_independent_error")
        rows.append(
            [
                key,
                *(_pct(a[e]) for e in errors),
                _pct(m["maxboxacc"]["value"]),
                _pct(m["maxboxacc_v2"]["value"]),
                "-" if chosen is None else f"{chosen:.2f}",
            ]
        )
    cls = metrics["classification"]
    print(
        f"{cls['images']} images, top-1 accuracy {_pct(cls['top1_acc'])}%, "
        f"top-5 {_pct(cls['top5_acc'])}%"
    )
    print_table(rows, SUMMARY_HEADER)


def run_table(args: argparse.Namespace) -> int:
    runs = []
    for d in args.runs:
        path = Path(d)
        f = path / "metrics.json" if path.is_dir() else path
        if not f.is_file():
            raise FileNotFoundError(f"{d}: no metrics.json (run `eigencam localize` first)")
        try:
            runs.append(json.loads(f.read_text()))
        except json.JSONDecodeError as err:
            raise InvalidParameterError(f"{f}: not valid JSON ({err})") from None
    text = table_markdown(runs)
    if args.out:
        atomic_write(args.out, lambda fh: fh.write(text), mode="w")
        print(f"-> {args.out}")
    else:
        sys.stdout.write(text)
    return 0
