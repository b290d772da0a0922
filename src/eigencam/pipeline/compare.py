"""``eigencam compare``: every method on every image, one figure grid per image, ``results.json``.

Class-specific methods explain the predicted class, or each of the top-k classes. A method that
fails on a batch is retried image by image; what still fails is recorded for that image and
drawn as a grey cell.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor, nn

from eigencam.errors import EigenCAMError, InputMismatchError, OutputError, check, check_range
from eigencam.io.png import write_png
from eigencam.methods.base import CAMResult, Explainer
from eigencam.models.preprocessing import Preprocessing
from eigencam.pipeline.explain import (
    FileTask,
    RunReport,
    _part,
    file_run_identity,
    input_files,
    slice_result,
    target_records,
    top_predictions,
)
from eigencam.postprocess.placement import maps_at_original
from eigencam.runs.folder import RunFolder
from eigencam.runs.loop import Part, RunStats, gather
from eigencam.runs.options import RunOptions
from eigencam.runs.source import Batch, LoadedImage
from eigencam.runs.step import classify, isolate, to_batch
from eigencam.viz.grid import compose_grid, failed_tile, fit_size, heat_tile, resize_rgb

_TOP = re.compile(r"^top(\d+)$")
_JSON_SCALARS = (type(None), bool, int, float, str)  # the params results.json records


@dataclass(frozen=True)
class CompareOptions:
    """How the figures look.

    Attributes:
        targets: ``"predicted"`` (one row) or ``"top<k>"`` (k rows: class-specific methods once
            per class, class-agnostic methods in the first row).
        tile, colormap, alpha: longer side of each cell in pixels; the heat-map overlay.
    """

    targets: str = "predicted"
    tile: int = 224
    colormap: str = "jet"
    alpha: float = 0.5

    def __post_init__(self) -> None:
        check(
            self.targets == "predicted" or bool(_TOP.match(self.targets or "")),
            f"targets must be 'predicted' or 'top<k>', got {self.targets!r}",
        )
        check(self.rows >= 1, f"targets={self.targets!r}: k must be >= 1")
        check_range("tile", self.tile, 16, 2048)
        check_range("alpha", self.alpha, 0.0, 1.0)

    @property
    def rows(self) -> int:
        match = _TOP.match(self.targets)
        return int(match.group(1)) if match else 1

    @property
    def spec(self) -> str | None:
        return None if self.targets == "predicted" else self.targets


@dataclass
class CompareTask(FileTask):
    """The task of :func:`compare_files` (see there for the fields)."""

    model: nn.Module
    explainers: Mapping[str, Explainer]
    options: CompareOptions

    def _method(self, explainer: Explainer, x: Tensor) -> list[CAMResult | str]:
        """One result (or error message) per image; a failing batch is retried image by image."""
        targets = self.options.spec if type(explainer).class_specific else None

        def explain(rows: list[int]) -> list[CAMResult]:
            xs = x[rows]
            result = explainer(xs) if targets is None else explainer(xs, targets)
            return [slice_result(result, i) for i in range(len(rows))]

        return [
            res if err is None else f"{type(err).__name__}: {err}"
            for _, res, err in isolate(
                explain, list(range(x.shape[0])), (OutputError, InputMismatchError)
            )
        ]

    def process(self, batch: Batch) -> Future[Part]:
        records = [{**f, "status": "error"} for f in batch.failures]
        writes = []
        if batch.items:
            x = to_batch([img.pixels for img, _ in batch.items], self.pre, self.run.device)
            preds = top_predictions(classify(self.model, x), self.labels, 5)
            per_method = {name: self._method(e, x) for name, e in self.explainers.items()}
            for i, (img, item) in enumerate(batch.items):
                results = {name: outcome[i] for name, outcome in per_method.items()}
                top = preds[i] if preds else None
                record = {"key": item.key, **_record(img, item.key, results, top, self.labels)}
                records.append(record)
                writes.append(self.writer.submit(self._write_grid, img, results, record))
        return gather(writes, lambda: _part(records))

    def _write_grid(
        self, img: LoadedImage, results: Mapping[str, CAMResult | str], record: dict[str, Any]
    ) -> None:
        """Draw and write one image's grid, adding each map's statistics to ``record``."""
        opt = self.options
        try:
            size = fit_size(img.size[0], img.size[1], opt.tile)
            base = resize_rgb(np.asarray(img.original), size)
            preds = record["top5"] or []
            rows: list[list[np.ndarray | None]] = []
            for row in range(opt.rows):
                cells: list[np.ndarray | None] = [
                    heat_tile(base, None, ["image", _row_label(preds, row, opt)])
                ]
                for name, result in results.items():
                    entry = record["methods"][name]
                    if isinstance(result, str):
                        cells.append(failed_tile(size, [name, "failed"]) if row == 0 else None)
                        continue
                    if (result.targets is None and row > 0) or row >= int(result.raw.shape[1]):
                        cells.append(None)
                        continue
                    raw = result.raw[0, row : row + 1].cpu()
                    relu = bool(result.params.get("relu", False))
                    heat = maps_at_original(raw, self.pre, size, relu=relu)[0]
                    if result.targets is None:
                        caption = [name, "class-agnostic"]
                    else:
                        caption = [name, f"class: {entry['targets'][row]['label']}"]
                    full = maps_at_original(raw, self.pre, img.size, relu=relu)
                    entry["maps"].append(_stats(raw[0].float(), full[0]))
                    cells.append(
                        heat_tile(base, heat, caption, alpha=opt.alpha, colormap=opt.colormap)
                    )
                rows.append(cells)
            top3 = "   ".join(f"{p['label']} ({p['probability']:.3f})" for p in preds[:3])
            grid = compose_grid(rows, title=[f"top-3: {top3}"])
            write_png(self.out / record["outputs"]["grid"], grid)
        except OutputError:
            raise  # the disk or folder failed: the run stops, keeping what it finished
        except EigenCAMError as err:  # this image's own problem (an unusable map, say)
            record.update(status="error", error=f"writing the figure failed: {err}", outputs={})

    def finish(self, folder: RunFolder, stats: RunStats) -> RunReport:
        return self.results(
            folder, stats, methods=list(self.explainers), targets=self.options.targets
        )


def compare_files(
    paths: Sequence[str | Path],
    model: nn.Module,
    explainers: Mapping[str, Explainer],
    preprocessing: Preprocessing,
    out_dir: str | Path,
    *,
    labels: Sequence[str] | None = None,
    options: CompareOptions = CompareOptions(),
    run: RunOptions | None = None,
    run_info: dict[str, Any] | None = None,
    extra_failures: Sequence[tuple[str, str]] = (),
) -> RunReport:
    """Explain every image with every method and write ``<stem>_compare.png`` + results.json.

    Args:
        paths: image files.
        model: the model the explainers wrap (its output gives the top-k predictions).
        explainers: method name -> configured explainer, in column order.
        preprocessing: how images become model input.
        out_dir: the run folder (created; resumable with ``run.resume``).
        labels: class names for the model's outputs.
        options: targets and figure appearance.
        run: batch size, workers, device, resume/overwrite, max_pixels, progress.
        run_info: extra fields for results.json.
        extra_failures: (item, reason) pairs recorded as failures up front (unmatched globs).

    A method that fails on an image with an :class:`~eigencam.errors.EigenCAMError` is recorded
    for that image and drawn as a grey cell.

    Returns:
        A :class:`~eigencam.pipeline.explain.RunReport`; ``results.json`` is written even when
        the run is interrupted.
    """
    check(bool(explainers), "compare needs at least one method")
    run = run or RunOptions(batch_size=4)
    items = input_files(paths)
    task = CompareTask(
        preprocessing, run, labels, run_info, items, extra_failures, model, explainers, options
    )
    identity = file_run_identity(run_info, methods=list(explainers), options=asdict(options))
    return task.start(out_dir, identity, "compare")


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
            "params": {k: v for k, v in result.params.items() if isinstance(v, _JSON_SCALARS)},
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


def _row_label(preds: list, row: int, options: CompareOptions) -> str:
    if options.spec is None:
        return f"predicted: {preds[0]['label']}" if preds else "predicted class"
    if row < len(preds):
        return f"top-{row + 1}: {preds[row]['label']} {preds[row]['probability']:.2f}"
    return f"top-{row + 1}"
