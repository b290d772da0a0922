"""Explain a list of image files and write overlays, maps and one ``results.json``.

This is what ``eigencam explain`` and ``eigencam demo`` run. Images are decoded in threads and
explained in batches; each finished image's files are written at once, atomically, so an
interrupted or partly failing run keeps everything that was done. An unreadable image, or one
whose activations are not finite, becomes a recorded failure; the others are still written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from eigencam.errors import EigenCAMError, OutputError, check, check_range
from eigencam.io.outputs import UniqueStems, write_json, write_npy
from eigencam.io.png import write_png
from eigencam.methods.base import CAMResult, Explainer
from eigencam.models.outputs import Detections, segmentation_summary
from eigencam.models.preprocessing import Preprocessing
from eigencam.postprocess.maps import renormalize_in_boxes
from eigencam.postprocess.placement import maps_at_original
from eigencam.runs.folder import RunFolder
from eigencam.runs.loop import Part, RunStats, gather, run_task
from eigencam.runs.options import RunOptions
from eigencam.runs.source import Batch, LoadedImage, image_batches
from eigencam.runs.step import isolate, to_batch
from eigencam.viz.overlay import add_caption, draw_boxes, overlay

SAVE_KINDS = ("overlay", "npy")


@dataclass(frozen=True)
class OutputOptions:
    """What to write for each image.

    Attributes:
        save: subset of ``("overlay", "npy")``.
        colormap: matplotlib colormap name for overlays.
        alpha: heat-map opacity in overlays.
        caption: add a band with the top-3 predictions under each overlay.
        top_k: number of predictions recorded in results.json.
        score_threshold: detectors: boxes scoring at least this are recorded and drawn.
        max_boxes: detectors: at most this many boxes per image (best first).
        draw_boxes: detectors: draw the boxes (with class name and score) on the overlays.
        renormalize_boxes: detectors: normalise the map inside each box on its own and zero it
            outside the boxes (:func:`eigencam.postprocess.maps.renormalize_in_boxes`), in the
            overlay and the ``.npy``.
    """

    save: tuple[str, ...] = SAVE_KINDS
    colormap: str = "jet"
    alpha: float = 0.5
    caption: bool = False
    top_k: int = 5
    score_threshold: float = 0.5
    max_boxes: int = 100
    draw_boxes: bool = True
    renormalize_boxes: bool = False

    def __post_init__(self) -> None:
        bad = [s for s in self.save if s not in SAVE_KINDS]
        check(not bad, f"save: unknown kind(s) {bad}; choose from {', '.join(SAVE_KINDS)}")
        check_range("alpha", self.alpha, 0.0, 1.0)
        check_range("score_threshold", self.score_threshold, 0.0, 1.0)
        check_range("max_boxes", self.max_boxes, 0)


@dataclass
class RunReport:
    """Summary of a run over files (``explain``, ``compare``): one record per input, in order."""

    records: list[dict[str, Any]] = field(default_factory=list)
    results_path: Path | None = None
    seconds: float = 0.0

    @property
    def failed(self) -> list[dict[str, Any]]:
        """Records of inputs that could not be read or explained (``status != "ok"``)."""
        return [r for r in self.records if r["status"] != "ok"]

    @property
    def ok(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["status"] == "ok"]


ExplainReport = RunReport


def top_predictions(output: Any, labels: Sequence[str] | None, k: int) -> list[list[dict]] | None:
    """Top-k (index, label, probability) per image when ``output`` is classifier logits."""
    if not isinstance(output, Tensor) or output.ndim != 2 or output.shape[1] < 2:
        return None
    probs = output.detach().float().softmax(dim=1)
    k = min(k, probs.shape[1])
    values, indices = probs.topk(k, dim=1)
    values, indices = values.cpu().tolist(), indices.cpu().tolist()
    use_labels = labels is not None and len(labels) == probs.shape[1]
    return [
        [
            {"index": int(i), "label": labels[i] if use_labels else str(i), "probability": float(p)}
            for i, p in zip(row_i, row_p)
        ]
        for row_i, row_p in zip(indices, values)
    ]


@dataclass(frozen=True)
class InputFile:
    """One input of a run over files: its output stem is its key (unique within the run)."""

    key: str
    path: Path


def input_files(paths: Sequence[str | Path]) -> list[InputFile]:
    """The run's inputs with their output stems, assigned over the whole list (so a resumed
    run gives every image the stem an uninterrupted run gives it)."""
    stems = UniqueStems()
    return [InputFile(stems(p), Path(p)) for p in paths]


def file_run_identity(run_info: dict[str, Any] | None, **settings: Any) -> dict[str, Any]:
    """What must not change between a run over files and its resumption."""
    volatile = ("device", "eigencam_version", "command_line")
    info = {k: v for k, v in (run_info or {}).items() if k not in volatile}
    return {**info, **settings}


def write_file_results(
    folder: RunFolder,
    stats: RunStats,
    run_info: dict[str, Any] | None,
    items: Sequence[InputFile],
    extra_failures: Sequence[tuple[str, str]],
    **fields: Any,
) -> RunReport:
    """``results.json`` of a run over files, from the folder's records, in input order."""
    recorded = {r["key"]: r for r in folder.records().rows}
    for stop in stats.stopped:  # the batch that stopped the run: failed, retried on --resume
        recorded.setdefault(
            stop["key"], {"key": stop["key"], **_failure_record(stop["file"], stop["error"])}
        )
    records = [_failure_record(item, reason) for item, reason in extra_failures]
    for item in items:
        if item.key in recorded:
            records.append({k: v for k, v in recorded[item.key].items() if k != "key"})
    report = RunReport(records=records, seconds=stats.seconds)
    layers = [r["layer"] for r in report.ok if r.get("layer")]
    summary = {
        **(run_info or {}),
        **({"layer": layers[0] if layers else None} if "layer" not in fields else {}),
        **fields,
        "counts": {
            "images": len(report.records),
            "ok": len(report.ok),
            "failed": len(report.failed),
            "not_processed": len(items) - len(recorded),
        },
        "resumed": stats.resumed,
        "seconds": round(report.seconds, 3),
        "images": report.records,
    }
    report.results_path = write_json(folder.path / "results.json", summary)
    return report


@dataclass
class FileTask:
    """What the tasks of runs over image files share (``explain``, ``compare``): the inputs,
    how they are read, the threads that write each image's files, and ``results.json``."""

    pre: Preprocessing
    run: RunOptions
    labels: Sequence[str] | None
    run_info: dict[str, Any] | None
    items: Sequence[InputFile]
    extra_failures: Sequence[tuple[str, str]]
    out: Path | None = field(default=None, init=False)
    writer: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        workers = max(1, self.run.workers)
        self.writer = ThreadPoolExecutor(workers, thread_name_prefix="eigencam-write")

    def keep_original(self) -> bool:
        """Whether the batches keep each original image (to draw on it)."""
        return True

    def batches(self, todo: list[InputFile]) -> Iterator[Batch]:
        return image_batches(todo, self.pre, self.run, keep_original=self.keep_original())

    def start(self, out_dir: str | Path, identity: dict[str, Any], command: str) -> Any:
        """Run the task into the run folder ``out_dir``: what ``finish`` returns."""
        folder = RunFolder(out_dir, identity, command=command)
        self.out = folder.path
        return run_task(self, folder, self.items, self.run, self.batches)

    def results(self, folder: RunFolder, stats: RunStats, **fields: Any) -> RunReport:
        """Wait for the writers, then write ``results.json`` (:func:`write_file_results`)."""
        self.writer.shutdown(wait=True)
        return write_file_results(
            folder, stats, self.run_info, self.items, self.extra_failures, **fields
        )


@dataclass
class ExplainTask(FileTask):
    """``eigencam explain``: one explainer, per-image overlays and maps, ``results.json`` (see
    :func:`explain_files` for the fields)."""

    explainer: Explainer
    options: OutputOptions
    detections: Callable[[Any], list[Detections]] | None
    targets: Any

    def keep_original(self) -> bool:
        return "overlay" in self.options.save

    def explain(self, pairs: list[tuple[LoadedImage, InputFile]]) -> list[tuple]:
        x = to_batch([img.pixels for img, _ in pairs], self.pre, self.run.device)
        result = self.explainer(x) if self.targets is None else self.explainer(x, self.targets)
        dets = self.detections(result.output) if self.detections is not None else None
        segments = segmentation_summary(result.output, self.labels) if dets is None else None
        out = []
        for i, (img, _) in enumerate(pairs):
            extras: dict[str, Any] = {}
            if dets is not None:
                kept = dets[i].above(self.options.score_threshold, self.options.max_boxes)
                extras["detections"] = kept.to_original(self.pre, *img.size)
            if segments is not None:
                extras["segments"] = segments[i]
            out.append((slice_result(result, i), extras))
        return out

    def process(self, batch: Batch) -> Future[Part]:
        records = [{**f, "status": "error"} for f in batch.failures]
        writes = []
        for (img, item), res, error in isolate(self.explain, batch.items):
            if error is not None:
                records.append({"key": item.key, **_failure_record(img.path, str(error))})
                continue
            result, extras = res
            preds = top_predictions(result.output, self.labels, self.options.top_k)
            top = preds[0] if preds else None
            record = {"key": item.key}
            record.update(_ok_record(img, result, item.key, self.options, top, self.labels))
            if extras.get("detections") is not None:
                record["detections"] = extras["detections"].records(self.labels)
            if extras.get("segments") is not None:
                record["segments"] = extras["segments"]
            records.append(record)
            writes.append(
                self.writer.submit(
                    _write_outputs,
                    img,
                    result,
                    item.key,
                    self.out,
                    self.pre,
                    self.options,
                    top,
                    record,
                    extras.get("detections"),
                    self.labels,
                )
            )
        return gather(writes, lambda: _part(records))

    def finish(self, folder: RunFolder, stats: RunStats) -> RunReport:
        return self.results(folder, stats)


def _part(records: list[dict[str, Any]]) -> Part:
    """A json part of a run over files: every record is a row (failed ones too)."""
    failed = sum(r["status"] == "error" for r in records)
    return Part({"rows": records, "failures": []}, ok=len(records) - failed, failed=failed)


def explain_files(
    paths: Sequence[str | Path],
    explainer: Explainer,
    preprocessing: Preprocessing,
    out_dir: str | Path,
    *,
    labels: Sequence[str] | None = None,
    options: OutputOptions = OutputOptions(),
    run: RunOptions | None = None,
    run_info: dict[str, Any] | None = None,
    extra_failures: Sequence[tuple[str, str]] = (),
    detections: Callable[[Any], list[Detections]] | None = None,
    targets: Any = None,
) -> RunReport:
    """Explain every image and write ``<stem>.png``, ``<stem>.npy`` and ``results.json``.

    Args:
        paths: image files.
        explainer: a configured explainer (``EigenCAM(model, ...)``).
        preprocessing: how images become model input.
        out_dir: the run folder (created; ``run.json`` and ``records/`` make it resumable).
        labels: class names for the model's outputs.
        options: what to write.
        run: batch size, workers, device, resume/overwrite, max_pixels, progress.
        run_info: extra fields for results.json (model name, arguments...); all but the
            device and version are part of the run's identity.
        extra_failures: (item, reason) pairs recorded as failures up front (unmatched globs).
        detections: for detectors, reads the batch output into one
            :class:`~eigencam.models.outputs.Detections` per image (``LoadedModel.detections``):
            the boxes go to results.json and onto the overlays.
        targets: class targets for class-specific explainers (``"top3"``, an index...); None
            uses the explainer's default (the predicted class).

    Per image, results.json records the top-k classes for classifier outputs, the boxes
    (original-image pixels) for detectors, and the predicted classes' pixel shares for
    segmenters (dict outputs with ``"out"`` logits).

    Returns:
        A :class:`RunReport`; ``results.json`` is written even when the run is interrupted.
    """
    run = run or RunOptions()
    items = input_files(paths)
    task = ExplainTask(
        preprocessing, run, labels, run_info, items, extra_failures,
        explainer, options, detections, targets,
    )  # fmt: skip
    identity = file_run_identity(run_info, outputs=asdict(options), targets=str(targets))
    return task.start(out_dir, identity, "explain")


def slice_result(result: CAMResult, i: int) -> CAMResult:
    """Image ``i`` of a batch result."""
    out = result.output
    return CAMResult(
        maps=result.maps[i : i + 1],
        raw=result.raw[i : i + 1],
        layer=result.layer,
        method=result.method,
        output=out[i : i + 1] if isinstance(out, Tensor) and out.ndim >= 1 else None,
        explained_variance_ratio=None
        if result.explained_variance_ratio is None
        else result.explained_variance_ratio[i : i + 1],
        targets=None if result.targets is None else result.targets[i : i + 1],
        params=result.params,
        extent=result.extent,
    )


def target_records(targets: Tensor | None, labels: Sequence[str] | None) -> list[dict] | None:
    """[{"index", "label"}] for one image's (k,) class indices, or None."""
    if targets is None:
        return None
    use_labels = labels is not None
    return [
        {
            "index": int(t),
            "label": labels[int(t)] if use_labels and 0 <= int(t) < len(labels) else str(int(t)),
        }
        for t in targets.reshape(-1).tolist()
    ]


def _ok_record(
    img: LoadedImage,
    result: CAMResult,
    stem: str,
    options: OutputOptions,
    preds: list | None,
    labels: Sequence[str] | None = None,
) -> dict[str, Any]:
    k = int(result.raw.shape[1])
    targets = target_records(None if result.targets is None else result.targets[0], labels)
    suffix = "pc" if targets is None else "top"
    outputs = {}
    if "overlay" in options.save:
        outputs["overlay"] = [f"{stem}.png"] + [f"{stem}_{suffix}{j + 1}.png" for j in range(1, k)]
    if "npy" in options.save:
        outputs["npy"] = f"{stem}.npy"
    evr = result.explained_variance_ratio
    return {
        "file": str(img.path),
        "status": "ok",
        "width": img.size[0],
        "height": img.size[1],
        "method": result.method,
        "layer": result.layer,
        "explained_variance_ratio": None if evr is None else [round(float(v), 6) for v in evr[0]],
        "target": None if targets is None else targets[0]["index"],
        "targets": targets,
        "top5": preds,
        "outputs": outputs,
        "error": None,
    }


def _failure_record(path: Any, error: str) -> dict[str, Any]:
    """The record of an input that could not be read or explained."""
    return {"file": str(path), "status": "error", "error": error}


def _write_outputs(
    img: LoadedImage,
    result: CAMResult,
    stem: str,
    out: Path,
    pre: Preprocessing,
    options: OutputOptions,
    preds: list | None,
    record: dict[str, Any],
    detections: Detections | None = None,
    labels: Sequence[str] | None = None,
) -> None:
    try:
        relu = bool(result.params.get("relu", False))
        maps = maps_at_original(result.raw[0].cpu(), pre, img.size, relu=relu, extent=result.extent)
        if options.renormalize_boxes and detections is not None:
            maps = renormalize_in_boxes(torch.from_numpy(maps)[None], [detections.boxes])[0]
            maps = maps.numpy()
        if "npy" in options.save:
            write_npy(out / f"{stem}.npy", maps[0] if maps.shape[0] == 1 else maps)
        if "overlay" in options.save:
            base = np.asarray(img.original)
            for j, name in enumerate(record["outputs"]["overlay"]):
                rgb = overlay(base, maps[j], alpha=options.alpha, colormap=options.colormap)
                if options.draw_boxes and detections is not None and len(detections):
                    rgb = draw_boxes(
                        rgb,
                        detections.boxes.tolist(),
                        [f"{d['name']} {d['score']:.2f}" for d in detections.records(labels)],
                        detections.labels.tolist(),
                    )
                if options.caption:
                    rgb = add_caption(rgb, caption_lines(result, preds, j, record.get("targets")))
                write_png(out / name, rgb)
    except OutputError:
        raise  # the disk or folder failed: the run stops, keeping what it finished
    except EigenCAMError as err:  # this image's own problem (an unusable map, say)
        record.update(status="error", error=f"writing outputs failed: {err}", outputs={})


def caption_lines(
    result: CAMResult, preds: list | None, component: int = 0, targets: list | None = None
) -> list[str]:
    """Caption for an overlay: method, layer, component or class, and the top-3 predictions."""
    head = f"{result.method} @ {result.layer}"
    if result.explained_variance_ratio is not None:
        evr = float(result.explained_variance_ratio[0, component])
        head += f"  PC{component + 1} ({evr:.0%} of variance)"
    if targets:
        head += f"  class: {targets[component]['label']}"
    lines = [head]
    if preds:
        lines.append("  ".join(f"{p['label']} {p['probability']:.2f}" for p in preds[:3]))
    return lines
