"""Explain a list of image files and write overlays, maps and one ``results.json``.

This is what ``eigencam explain`` and ``eigencam demo`` run. Images are decoded in threads and
explained in batches; each finished image's files are written at once, atomically, so an
interrupted or partly failing run keeps everything that was done. An unreadable image, or one
whose activations are not finite, becomes a recorded failure; the others are still written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from eigencam.errors import NonFiniteActivationError
from eigencam.io.images import DEFAULT_MAX_PIXELS
from eigencam.io.outputs import UniqueStems, write_json, write_npy, write_png
from eigencam.maps import normalize, renormalize_in_boxes, upsample
from eigencam.methods.base import CAMResult, Explainer
from eigencam.models.outputs import Detections, segmentation_summary
from eigencam.models.preprocessing import Preprocessing
from eigencam.pipeline.loader import LoadedImage, iter_batches

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
            outside the boxes (:func:`eigencam.maps.renormalize_in_boxes`), in the overlay and
            the ``.npy``.
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
        if bad:
            raise ValueError(f"save: unknown kind(s) {bad}; choose from {', '.join(SAVE_KINDS)}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {self.score_threshold}")
        if self.max_boxes < 0:
            raise ValueError(f"max_boxes must be >= 0, got {self.max_boxes}")


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


def maps_at_original(
    raw: Tensor,
    preprocessing: Preprocessing,
    size: tuple[int, int],
    *,
    relu: bool = False,
    extent: tuple[float, float] | None = None,
) -> np.ndarray:
    """Raw maps (k, h, w) -> normalised float32 maps (k, H, W) over the original image.

    The maps are upsampled (bilinear) straight to the region of the original image the model
    saw (:meth:`Preprocessing.crop_region`) and normalised over the part of that region inside
    the image: with ``stretch`` the whole image; with ``center-crop`` the crop (zero elsewhere);
    with ``letterbox`` the image without the padding. ``extent`` (from
    :attr:`CAMResult.extent`) places maps of models that padded their input internally.
    ``relu`` clips the raw maps at their own resolution, before upsampling (as explainers do).
    """
    width, height = size
    x0, y0, x1, y1 = preprocessing.crop_region(width, height)
    cx0, cy0 = round(x0), round(y0)
    cw, ch = max(1, round(x1) - cx0), max(1, round(y1) - cy0)
    src = raw[None].float()
    up = upsample(src.clamp_min(0) if relu else src, (ch, cw), extent=extent)[0]
    sx0, sy0 = max(0, -cx0), max(0, -cy0)
    dx0, dy0 = max(0, cx0), max(0, cy0)
    w = max(0, min(cw - sx0, width - dx0))
    h = max(0, min(ch - sy0, height - dy0))
    part = normalize(up[:, sy0 : sy0 + h, sx0 : sx0 + w])
    if (h, w) == (height, width):
        return part.numpy()
    canvas = torch.zeros(raw.shape[0], height, width)
    canvas[:, dy0 : dy0 + h, dx0 : dx0 + w] = part
    return canvas.numpy()


def explain_files(
    paths: Sequence[str | Path],
    explainer: Explainer,
    preprocessing: Preprocessing,
    out_dir: str | Path,
    *,
    labels: Sequence[str] | None = None,
    options: OutputOptions = OutputOptions(),
    batch_size: int = 8,
    workers: int = 2,
    device: str | torch.device = "cpu",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    progress: Callable[[int, int], None] | None = None,
    run_info: dict[str, Any] | None = None,
    extra_failures: Sequence[tuple[str, str]] = (),
    detections: Callable[[Any], list[Detections]] | None = None,
    targets: Any = None,
) -> ExplainReport:
    """Explain every image and write ``<stem>.png``, ``<stem>.npy`` and ``results.json``.

    Args:
        paths: image files.
        explainer: a configured explainer (``EigenCAM(model, ...)``).
        preprocessing: how images become model input.
        out_dir: output folder (created).
        labels: class names for the model's outputs.
        options: what to write.
        batch_size, workers: images per forward pass; decoding/writing threads.
        device: where the input batches go (the model's device).
        max_pixels: images above this many pixels are refused.
        progress: called as ``progress(done, failed)`` after each batch.
        run_info: extra fields for results.json (model name, arguments...).
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
        An :class:`ExplainReport`; ``results.json`` is written even when the run is interrupted.
    """
    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [Path(p) for p in paths]
    records: list[dict[str, Any] | None] = [None] * len(paths)
    report = ExplainReport()
    stems = UniqueStems()
    pre_failures = [_failure_record(item, reason) for item, reason in extra_failures]
    writer = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="eigencam-write")
    pending = []
    keep = "overlay" in options.save
    layer_used: list[str] = []
    try:
        for images, failures in iter_batches(
            paths,
            preprocessing,
            batch_size=batch_size,
            workers=workers,
            max_pixels=max_pixels,
            keep_original=keep,
        ):
            for f in failures:
                records[f.index] = _failure_record(f.path, f.error)
            for img, result, extras, error in _explain_batch(
                images, explainer, preprocessing, device, detections, labels, options, targets
            ):
                if error is not None:
                    records[img.index] = _failure_record(img.path, error)
                    continue
                layer_used.append(result.layer)
                stem = stems(img.path)
                preds = top_predictions(result.output, labels, options.top_k)
                record = _ok_record(img, result, stem, options, preds[0] if preds else None, labels)
                if extras.get("detections") is not None:
                    record["detections"] = extras["detections"].records(labels)
                if extras.get("segments") is not None:
                    record["segments"] = extras["segments"]
                records[img.index] = record
                pending.append(
                    writer.submit(
                        _write_outputs,
                        img,
                        result,
                        stem,
                        out,
                        preprocessing,
                        options,
                        preds[0] if preds else None,
                        record,
                        extras.get("detections"),
                        labels,
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
            "layer": layer_used[0] if layer_used else None,
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


def _explain_batch(
    images: list[LoadedImage],
    explainer: Explainer,
    pre: Preprocessing,
    device: Any,
    detections: Callable[[Any], list[Detections]] | None = None,
    labels: Sequence[str] | None = None,
    options: OutputOptions = OutputOptions(),
    targets: Any = None,
) -> list[tuple[LoadedImage, CAMResult | None, dict[str, Any], str | None]]:
    """Explain a batch; if activations are not finite, retry image by image to isolate it.

    Returns (image, result for that image, extras, error) per image; extras hold the image's
    detections in original-image pixels (thresholded) and its segmentation summary.
    """
    if not images:
        return []
    pixels = torch.from_numpy(np.stack([img.pixels for img in images])).to(device)
    x = pre.normalize_batch(pixels)
    try:
        result = explainer(x) if targets is None else explainer(x, targets)
    except NonFiniteActivationError as err:
        if len(images) == 1:
            return [(images[0], None, {}, str(err))]
        return [
            item
            for img in images
            for item in _explain_batch(
                [img], explainer, pre, device, detections, labels, options, targets
            )
        ]
    dets = detections(result.output) if detections is not None else None
    segments = segmentation_summary(result.output, labels) if dets is None else None
    out = []
    for i, img in enumerate(images):
        extras: dict[str, Any] = {}
        if dets is not None:
            kept = dets[i].above(options.score_threshold, options.max_boxes)
            extras["detections"] = kept.to_original(pre, *img.size)
        if segments is not None:
            extras["segments"] = segments[i]
        out.append((img, _slice(result, i), extras, None))
    return out


def _slice(result: CAMResult, i: int) -> CAMResult:
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
            from eigencam.viz.overlay import add_caption, draw_boxes, overlay

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
    except Exception as err:  # a write failure is this image's failure, not the run's
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


def _drain(pending: list, *, block: bool) -> list:
    keep = []
    for fut in pending:
        if block or fut.done():
            fut.result()
        else:
            keep.append(fut)
    return keep
