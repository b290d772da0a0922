"""What the per-image benchmarks (``eigencam attack``, ``eigencam faithfulness``) share.

Both are tasks of the run loop (:func:`~eigencam.runs.run_task`) over a dataset, with a
json-codec :class:`~eigencam.runs.RunFolder`: one identity builder, the maps of a method under
the isolation policy, the head of ``metrics.json``, and the writing of ``metrics.json``,
``table.md`` and ``per_image.csv`` from the folder's records.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from eigencam.errors import OutputError
from eigencam.evaluation.datasets import Dataset
from eigencam.io.outputs import atomic_write, write_json
from eigencam.methods.base import Explainer
from eigencam.methods.targets import logits_of
from eigencam.models.preprocessing import Preprocessing
from eigencam.runs.loop import RunStats
from eigencam.runs.step import classify, isolate

#: Errors of a method that stop a benchmark; any other EigenCAMError of a method (it cannot
#: explain this model or layer, say) leaves that method's cells of the image empty, as in
#: ``eigencam compare``: the other methods are still measured.
METHOD_RUN_ERRORS: tuple[type[Exception], ...] = (OutputError,)


def settings_dict(settings: Any) -> dict[str, Any]:
    """A settings dataclass as JSON (tuples as lists, mappings as dicts)."""
    raw = {f.name: getattr(settings, f.name) for f in fields(settings)}
    return json.loads(json.dumps(raw, default=dict))


def run_identity(
    dataset: Dataset,
    methods: Sequence[str],
    settings: Any,
    preprocessing: Preprocessing,
    model_info: Mapping[str, Any],
) -> dict[str, Any]:
    """What must not change between a benchmark run and its resumption."""
    return {
        "dataset": {"root": str(Path(dataset.root).resolve()), "format": dataset.format},
        "methods": list(methods),
        "settings": settings_dict(settings),
        "preprocessing": preprocessing.describe(),
        "model": {k: model_info.get(k) for k in ("model", "weights")},
    }


def logits(model: nn.Module, x: Tensor) -> Tensor:
    """The classifier's float logits for a batch (eval mode, flags restored)."""
    return logits_of(classify(model, x)).float()


def method_maps(
    explainer: Explainer, x: Tensor, targets: Tensor | None
) -> tuple[Tensor, dict[int, str]]:
    """(B, k, H, W) maps of one method on a batch and ``{image index: error}``.

    A batch that fails is retried image by image (:func:`~eigencam.runs.isolate`); the maps of
    the images a method still fails on are NaN.
    """

    def explain(rows: list[int]) -> list[Tensor]:
        xs = x[rows]
        res = explainer(xs) if targets is None else explainer(xs, targets=targets[rows])
        return list(res.maps.detach().float())

    outcomes = isolate(explain, list(range(x.shape[0])), METHOD_RUN_ERRORS)
    k = 1 if targets is None else targets.shape[1]
    blank = torch.full((k, *x.shape[-2:]), float("nan"), device=x.device)
    maps = torch.stack([blank if m is None else m.to(x.device) for _, m, _ in outcomes])
    return maps, {i: error_text(e) for i, _, e in outcomes if e is not None}


def error_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def num(x: Any) -> float | None:
    """A finite float, or None (JSON has no NaN)."""
    v = float(x)
    return None if not np.isfinite(v) else v


def class_name(labels: Sequence[str] | None, c: int) -> str:
    return labels[c] if labels is not None and 0 <= c < len(labels) else str(c)


def metrics_head(
    run_info: Mapping[str, Any],
    command: str,
    settings: Any,
    dataset: Dataset,
    stats: RunStats,
    *,
    preprocessing: Preprocessing | None = None,
) -> dict[str, Any]:
    """The first fields of ``metrics.json``: provenance, settings, dataset, timing (with
    ``preprocessing``: it and the dataset's skipped annotations too)."""
    n = stats.ok + stats.failed
    head = {**run_info, "command": run_info.get("command", command)}
    head["settings"] = settings_dict(settings)
    if preprocessing is not None:
        head["preprocessing"] = preprocessing.describe()
    head["dataset"] = {
        "root": str(dataset.root),
        "format": dataset.format,
        "images": len(dataset.samples),
    }
    if preprocessing is not None:
        head["dataset"]["skipped_annotations"] = [list(s) for s in dataset.skipped]
    head["timing"] = {
        "seconds_this_call": round(stats.seconds, 2),
        "images_this_call": n,
        "seconds_per_image": round(stats.seconds / n, 3) if n else None,
        "resumed_images": stats.resumed,
    }
    return head


def cell(d: Mapping[str, Any] | None, digits: int = 2) -> str:
    """``median [q25, q75]`` of a :func:`~eigencam.evaluation.metrics.stats.describe`, or ``-``."""
    if not d or d.get("median") is None:
        return "-"
    return f"{d['median']:.{digits}f} [{d['q25']:.{digits}f}, {d['q75']:.{digits}f}]"


def csv_cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, float):
        return f"{v:.5g}"
    if isinstance(v, list):
        return " ".join(f"{x:.1f}" for x in v)
    return str(v)


def write_outputs(
    out: Path,
    metrics: Mapping[str, Any],
    table: str,
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    failures: Sequence[Mapping[str, Any]],
) -> None:
    """``metrics.json``, ``table.md`` and ``per_image.csv`` (``rows``, then one row per failed
    image with its error in the last column), each written atomically."""
    write_json(out / "metrics.json", metrics)
    atomic_write(out / "table.md", lambda fh: fh.write(table), mode="w")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows([csv_cell(c) for c in row] for row in rows)
    for fail in failures:
        w.writerow([fail["key"]] + [""] * (len(header) - 2) + [fail["error"]])
    text = buf.getvalue()
    atomic_write(out / "per_image.csv", lambda fh: fh.write(text), mode="w")
