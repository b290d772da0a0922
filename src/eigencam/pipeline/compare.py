"""Compare methods on images: one figure grid per image and one ``results.json``.

This is what ``eigencam compare`` runs. Each batch of images is explained by every method
(class-specific methods for the predicted class, or for each of the top-k classes); each
image's grid is written as soon as its batch is done, atomically, so finished figures survive
an interrupted run. A method that fails on a batch is retried image by image; what still fails
is recorded for that image and shown as a grey cell, and the other methods and images are still
written.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from eigencam.capture.hooks import preserved_state
from eigencam.io.images import DEFAULT_MAX_PIXELS
from eigencam.io.outputs import UniqueStems, write_json
from eigencam.io.png import write_png
from eigencam.methods.base import CAMResult, Explainer
from eigencam.models.preprocessing import Preprocessing
from eigencam.pipeline.explain import (
    RunReport,
    _drain,
    _failure_record,
    _slice,
    target_records,
    top_predictions,
)
from eigencam.pipeline.loader import LoadedImage, iter_batches
from eigencam.postprocess.placement import maps_at_original

_TOP = re.compile(r"^top(\d+)$")


@dataclass(frozen=True)
class CompareOptions:
    """How the figures look.

    Attributes:
        targets: ``"predicted"`` (one row) or ``"top<k>"`` (k rows: class-specific methods once
            per class, class-agnostic methods in the first row).
        tile: longer side of each cell, in pixels.
        colormap: matplotlib colormap name.
        alpha: heat-map opacity.
    """

    targets: str = "predicted"
    tile: int = 224
    colormap: str = "jet"
    alpha: float = 0.5

    def __post_init__(self) -> None:
        if self.targets != "predicted" and not _TOP.match(self.targets or ""):
            raise ValueError(f"targets must be 'predicted' or 'top<k>', got {self.targets!r}")
        if self.rows < 1:
            raise ValueError(f"targets={self.targets!r}: k must be >= 1")
        if not 16 <= self.tile <= 2048:
            raise ValueError(f"tile must be in [16, 2048] pixels, got {self.tile}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")

    @property
    def rows(self) -> int:
        match = _TOP.match(self.targets)
        return int(match.group(1)) if match else 1

    @property
    def spec(self) -> str | None:
        return None if self.targets == "predicted" else self.targets


CompareReport = RunReport


def compare_files(
    paths: Sequence[str | Path],
    model: nn.Module,
    explainers: Mapping[str, Explainer],
    preprocessing: Preprocessing,
    out_dir: str | Path,
    *,
    labels: Sequence[str] | None = None,
    options: CompareOptions = CompareOptions(),
    batch_size: int = 4,
    workers: int = 2,
    device: str | torch.device = "cpu",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    progress: Callable[[int, int], None] | None = None,
    run_info: dict[str, Any] | None = None,
    extra_failures: Sequence[tuple[str, str]] = (),
) -> CompareReport:
    """Explain every image with every method and write ``<stem>_compare.png`` + results.json.

    Args:
        paths: image files.
        model: the model the explainers wrap (its output gives the top-k predictions).
        explainers: method name -> configured explainer, in column order.
        preprocessing: how images become model input.
        out_dir: output folder (created).
        labels: class names for the model's outputs.
        options: targets and figure appearance.
        batch_size, workers: images per forward pass; decoding/writing threads.
        device: where the input batches go (the model's device).
        max_pixels: images above this many pixels are refused.
        progress: called as ``progress(done, failed)`` after each batch.
        run_info: extra fields for results.json.
        extra_failures: (item, reason) pairs recorded as failures up front (unmatched globs).

    Returns:
        A :class:`CompareReport`; ``results.json`` is written even when the run is interrupted.
    """
    if not explainers:
        raise ValueError("compare needs at least one method")
    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [Path(p) for p in paths]
    records: list[dict[str, Any] | None] = [None] * len(paths)
    pre_failures = [_failure_record(item, reason) for item, reason in extra_failures]
    stems = UniqueStems()
    writer = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="eigencam-grid")
    pending: list = []
    report = CompareReport()
    try:
        for images, failures in iter_batches(
            paths,
            preprocessing,
            batch_size=batch_size,
            workers=workers,
            max_pixels=max_pixels,
            keep_original=True,
        ):
            for f in failures:
                records[f.index] = _failure_record(f.path, f.error)
            if not images:
                continue
            pixels = torch.from_numpy(np.stack([img.pixels for img in images])).to(device)
            x = preprocessing.normalize_batch(pixels)
            preds = _predictions(model, x, labels)
            per_method = {
                name: _run_method(explainer, x, options.spec)
                for name, explainer in explainers.items()
            }
            for i, img in enumerate(images):
                results = {name: outcome[i] for name, outcome in per_method.items()}
                stem = stems(img.path)
                record = _record(img, stem, results, preds[i] if preds else None, labels)
                records[img.index] = record
                pending.append(
                    writer.submit(
                        _write_grid, img, results, record, out, preprocessing, options, labels
                    )
                )
            pending = _drain(pending, block=False)
            if progress is not None:
                done = [r for r in records if r is not None]
                progress(len(done), sum(r["status"] != "ok" for r in done))
        _drain(pending, block=True)
    finally:
        writer.shutdown(wait=True)
        report.records = pre_failures + [r for r in records if r is not None]
        report.seconds = time.perf_counter() - start
        summary = {
            **(run_info or {}),
            "methods": list(explainers),
            "targets": options.targets,
            "counts": {
                "images": len(report.records),
                "ok": len(report.ok),
                "failed": len(report.failed),
                "not_processed": sum(r is None for r in records),
            },
            "seconds": round(report.seconds, 3),
            "images": report.records,
        }
        report.results_path = write_json(out / "results.json", summary)
    return report


def _predictions(model: nn.Module, x: Tensor, labels: Sequence[str] | None) -> list | None:
    with torch.inference_mode(), preserved_state(model):
        output = model(x)
    return top_predictions(output, labels, 5)


def _run_method(explainer: Explainer, x: Tensor, spec: str | None) -> list[CAMResult | str]:
    """One result (or error message) per image; a failing batch is retried image by image."""
    targets = spec if type(explainer).class_specific else None
    try:
        result = explainer(x) if targets is None else explainer(x, targets)
        return [_slice(result, i) for i in range(x.shape[0])]
    except Exception as err:  # recorded per image in results.json and on the figure
        if x.shape[0] == 1:
            return [f"{type(err).__name__}: {err}"]
        return [
            item for i in range(x.shape[0]) for item in _run_method(explainer, x[i : i + 1], spec)
        ]


def _stats(raw: Tensor, heat: np.ndarray) -> dict[str, Any]:
    """Statistics of one raw map (h, w) and its peak on the original image."""
    flat = raw.flatten()
    y, x = divmod(int(flat.argmax()), raw.shape[-1])
    py, px = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return {
        "min": round(float(flat.min()), 6),
        "max": round(float(flat.max()), 6),
        "mean": round(float(flat.mean()), 6),
        "peak": [int(y), int(x)],
        "peak_in_image": [int(px), int(py)],
    }


def _record(
    img: LoadedImage,
    stem: str,
    results: Mapping[str, CAMResult | str],
    preds: list | None,
    labels: Sequence[str] | None,
) -> dict[str, Any]:
    methods: dict[str, Any] = {}
    for name, result in results.items():
        if isinstance(result, str):
            methods[name] = {"status": "error", "error": result}
            continue
        targets = target_records(None if result.targets is None else result.targets[0], labels)
        methods[name] = {
            "status": "ok",
            "layer": result.layer,
            "targets": targets,
            "params": {k: v for k, v in result.params.items() if _jsonable(v)},
            "maps": [],
        }
    failed = [n for n, m in methods.items() if m["status"] != "ok"]
    return {
        "file": str(img.path),
        "status": "ok" if not failed else "partial",
        "width": img.size[0],
        "height": img.size[1],
        "top5": preds,
        "methods": methods,
        "outputs": {"grid": f"{stem}_compare.png"},
        "error": None if not failed else f"method(s) failed: {', '.join(failed)}",
    }


def _jsonable(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def _write_grid(
    img: LoadedImage,
    results: Mapping[str, CAMResult | str],
    record: dict[str, Any],
    out: Path,
    pre: Preprocessing,
    options: CompareOptions,
    labels: Sequence[str] | None,
) -> None:
    try:
        _render(img, results, record, out, pre, options)
    except Exception as err:  # a write failure is this image's failure, not the run's
        record.update(status="error", error=f"writing the figure failed: {err}", outputs={})


def _render(
    img: LoadedImage,
    results: Mapping[str, CAMResult | str],
    record: dict[str, Any],
    out: Path,
    pre: Preprocessing,
    options: CompareOptions,
) -> None:
    from eigencam.viz.grid import compose_grid, failed_tile, fit_size, heat_tile, resize_rgb

    size = fit_size(img.size[0], img.size[1], options.tile)
    base = resize_rgb(np.asarray(img.original), size)
    preds = record["top5"] or []
    rows: list[list[np.ndarray | None]] = []
    for row in range(options.rows):
        row_label = _row_label(preds, row, options)
        cells: list[np.ndarray | None] = [heat_tile(base, None, ["image", row_label])]
        for name, result in results.items():
            entry = record["methods"][name]
            if isinstance(result, str):
                cells.append(failed_tile(size, [name, "failed"]) if row == 0 else None)
                continue
            k = int(result.raw.shape[1])
            if (result.targets is None and row > 0) or row >= k:
                cells.append(None)
                continue
            relu = bool(result.params.get("relu", False))
            heat = maps_at_original(result.raw[0, row : row + 1].cpu(), pre, size, relu=relu)[0]
            if result.targets is None:
                caption = [name, "class-agnostic"]
            else:
                caption = [name, f"class: {entry['targets'][row]['label']}"]
            full = maps_at_original(result.raw[0, row : row + 1].cpu(), pre, img.size, relu=relu)
            entry["maps"].append(_stats(result.raw[0, row].float().cpu(), full[0]))
            cells.append(
                heat_tile(base, heat, caption, alpha=options.alpha, colormap=options.colormap)
            )
        rows.append(cells)
    title = ["top-3: " + "   ".join(f"{p['label']} ({p['probability']:.3f})" for p in preds[:3])]
    write_png(out / record["outputs"]["grid"], compose_grid(rows, title=title))


def _row_label(preds: list, row: int, options: CompareOptions) -> str:
    if options.spec is None:
        return f"predicted: {preds[0]['label']}" if preds else "predicted class"
    if row < len(preds):
        return f"top-{row + 1}: {preds[row]['label']} {preds[row]['probability']:.2f}"
    return f"top-{row + 1}"
