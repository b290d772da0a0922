"""Run explainers over a localization dataset and record, per image, the boxes and their IoUs.

:func:`run_localization` is what ``eigencam localize`` runs. Images are decoded and resized in
worker threads, explained in batches (every method on the same batch), and each batch's maps are
turned into boxes for every threshold of the union of the two protocols' grids
(:mod:`eigencam.postprocess.boxes`) in a background thread while the next batch runs. Each
finished batch is written at once, atomically, as ``records/part-NNNNNN.npz``: a killed run keeps
every finished batch, and ``resume=True`` skips the images already recorded. The protocols
(:mod:`eigencam.evaluation.protocols`) are then computed from the records alone
(:func:`summarize`).

Which map is scored:

- class-agnostic methods (Eigen-CAM): their single map, for every measure;
- class methods (``Explainer.class_specific``): the map of the ground-truth class (GT-known,
  top-1 and top-5 localization, MaxBoxAcc, MaxBoxAccV2) and the map of the top-1 predicted class
  (class-independent localization, the misclassification split). They are the same map when the
  prediction is right, and computed once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from eigencam.errors import EigenCAMError, NonFiniteActivationError
from eigencam.evaluation.datasets import Dataset, Sample
from eigencam.evaluation.metrics.protocols import (
    CHOE_GRID,
    CHOE_IOUS,
    PAPER_THRESHOLDS,
    grid_columns,
    maxboxacc,
    maxboxacc_v2,
    paper_protocol,
    union_grid,
)
from eigencam.evaluation.runfiles import RECORDS, open_run
from eigencam.evaluation.scoring import TOP_K, score_and_write
from eigencam.io.images import DEFAULT_MAX_PIXELS
from eigencam.methods.base import Explainer
from eigencam.models.preprocessing import Preprocessing
from eigencam.postprocess import boxes as bx
from eigencam.runs.source import LoadedImage, iter_batches


@dataclass(frozen=True)
class LocalizeSettings:
    """What is measured.

    Attributes:
        thresholds: the paper protocol's threshold sweep (fractions of the map's maximum).
        box_grid: Choe et al.'s threshold grid for MaxBoxAcc / MaxBoxAccV2.
        iou_threshold: IoU for a correct box in the paper protocol and MaxBoxAcc (0.5).
        v2_ious: MaxBoxAccV2's IoU thresholds (0.3, 0.5, 0.7).
        connectivity: 8 or 4 for connected components.
    """

    thresholds: tuple[float, ...] = PAPER_THRESHOLDS
    box_grid: tuple[float, ...] = CHOE_GRID
    iou_threshold: float = 0.5
    v2_ious: tuple[float, ...] = CHOE_IOUS
    connectivity: int = 8

    def __post_init__(self) -> None:
        if not self.thresholds or not self.box_grid:
            raise ValueError("thresholds and box_grid must not be empty")
        for name in ("iou_threshold",):
            v = getattr(self, name)
            if not 0.0 < v <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {v}")
        if not self.v2_ious or not all(0.0 < v <= 1.0 for v in self.v2_ious):
            raise ValueError(f"v2_ious must be IoU thresholds in (0, 1], got {self.v2_ious}")
        bx.structure(self.connectivity)

    @property
    def grid(self) -> tuple[float, ...]:
        """Every threshold evaluated: the union of both grids."""
        return union_grid(self.thresholds, self.box_grid)


# -- records --------------------------------------------------------------------------------
@dataclass
class Records:
    """Every recorded image of a run, concatenated (N images, M methods, T thresholds).

    Attributes:
        keys: (N,) image keys.
        labels: (N,) ground-truth class, -1 when unknown.
        top5: (N, K) predicted classes, best first; top5_prob: (N, K) their probabilities.
        sizes: (N, 2) original (width, height).
        regions: (N, 4) part of the original image the model saw.
        boxes: (N, M, 2, T, 4) largest-component box in original pixels, NaN when none; slot 0
            is the ground-truth class's map (the only map of class-agnostic methods), slot 1 the
            top-1 predicted class's map.
        iou: (N, M, 2, T) that box's best IoU with a ground-truth box.
        iou_all: (N, M, 2, T) best IoU over all components and ground-truth boxes.
        gt: list of (G_i, 4) ground-truth boxes (clipped to the region the model saw).
        layers: {method key: layer used}.
        skipped: [(key, reason)] images that could not be evaluated.
    """

    keys: np.ndarray
    labels: np.ndarray
    top5: np.ndarray
    top5_prob: np.ndarray
    sizes: np.ndarray
    regions: np.ndarray
    boxes: np.ndarray
    iou: np.ndarray
    iou_all: np.ndarray
    gt: list[np.ndarray]
    layers: dict[str, str]
    skipped: list[tuple[str, str]]

    def __len__(self) -> int:
        return int(self.keys.shape[0])


def _part_files(out: Path) -> list[Path]:
    return sorted((out / RECORDS).glob("part-*.npz"))


def load_records(out_dir: str | Path, methods: Sequence[str], n_thresholds: int) -> Records:
    """Read and concatenate every ``records/part-*.npz`` of a run (later parts win on repeats)."""
    out = Path(out_dir)
    m = len(methods)
    parts = []
    skipped: dict[str, str] = {}
    layers: dict[str, str] = {}
    for f in _part_files(out):
        with np.load(f, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        if list(data["methods"]) != list(methods):
            raise EigenCAMError(f"{f}: records of other methods ({list(data['methods'])})")
        for key, reason in zip(data["skipped_keys"], data["skipped_reasons"]):
            skipped[str(key)] = str(reason)
        for key, layer in zip(data["methods"], data["layers"]):
            if str(layer):
                layers.setdefault(str(key), str(layer))
        if data["keys"].size:
            parts.append(data)
    if not parts:
        return Records(
            keys=np.zeros(0, dtype=str),
            labels=np.zeros(0, dtype=np.int64),
            top5=np.zeros((0, TOP_K), dtype=np.int64),
            top5_prob=np.zeros((0, TOP_K), dtype=np.float32),
            sizes=np.zeros((0, 2), dtype=np.int64),
            regions=np.zeros((0, 4)),
            boxes=np.zeros((0, m, 2, n_thresholds, 4), dtype=np.float32),
            iou=np.zeros((0, m, 2, n_thresholds), dtype=np.float32),
            iou_all=np.zeros((0, m, 2, n_thresholds), dtype=np.float32),
            gt=[],
            layers=layers,
            skipped=sorted(skipped.items()),
        )
    names = ("keys", "labels", "top5", "top5_prob", "sizes", "regions", "boxes", "iou", "iou_all")
    cat = {k: np.concatenate([p[k] for p in parts]) for k in (*names, "gt_count")}
    gt_flat = np.concatenate([p["gt_flat"] for p in parts])
    gt = np.split(gt_flat, np.cumsum(cat["gt_count"])[:-1])
    keys = cat["keys"].astype(str)
    # Keep the last record of each image (a resumed run never repeats one, but be safe).
    _, last = np.unique(keys[::-1], return_index=True)
    keep = np.sort(len(keys) - 1 - last)
    order = keep[np.argsort(keys[keep], kind="stable")]
    for key in keys[order]:
        skipped.pop(str(key), None)
    return Records(
        keys=keys[order],
        labels=cat["labels"][order],
        top5=cat["top5"][order],
        top5_prob=cat["top5_prob"][order],
        sizes=cat["sizes"][order],
        regions=cat["regions"][order],
        boxes=cat["boxes"][order],
        iou=cat["iou"][order],
        iou_all=cat["iou_all"][order],
        gt=[gt[i] for i in order],
        layers=layers,
        skipped=sorted(skipped.items()),
    )


def recorded_keys(out_dir: str | Path) -> set[str]:
    """Keys of the images (evaluated or skipped) already recorded in a run folder."""
    done: set[str] = set()
    for f in _part_files(Path(out_dir)):
        with np.load(f, allow_pickle=False) as z:
            done.update(str(k) for k in z["keys"])
            done.update(str(k) for k in z["skipped_keys"])
    return done


# -- the run --------------------------------------------------------------------------------
@dataclass
class RunResult:
    """What :func:`run_localization` did: images evaluated now, skipped now, seconds."""

    evaluated: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    already_done: int = 0
    seconds: float = 0.0


def fingerprint(
    dataset: Dataset,
    methods: Sequence[str],
    settings: LocalizeSettings,
    preprocessing: Preprocessing,
    model_info: Mapping[str, Any],
) -> dict[str, Any]:
    """What must not change between a run and its resumption."""
    return {
        "dataset": {"root": str(dataset.root), "format": dataset.format},
        "methods": list(methods),
        "grid": list(settings.grid),
        "connectivity": settings.connectivity,
        "preprocessing": preprocessing.describe(),
        "model": dict(model_info),
    }


def run_localization(
    dataset: Dataset,
    model: torch.nn.Module,
    preprocessing: Preprocessing,
    explainers: Mapping[str, Explainer],
    out_dir: str | Path,
    *,
    settings: LocalizeSettings | None = None,
    model_info: Mapping[str, Any] | None = None,
    batch_size: int = 16,
    workers: int = 2,
    device: str | torch.device = "cpu",
    resume: bool = False,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    progress: Callable[[int, int], None] | None = None,
    score_workers: int = 1,
) -> RunResult:
    """Explain every image of ``dataset`` with every explainer and record boxes and IoUs.

    Args:
        dataset: the images and their ground truth.
        model: the classifier the explainers explain (for the class predictions).
        preprocessing: how images become model input (``center-crop`` clips the ground truth to
            the crop).
        explainers: {method key: explainer}, in table order.
        out_dir: the run folder (``run.json`` + ``records/``).
        settings: thresholds and IoU rules.
        model_info: model name, weights... (part of the run's identity for ``resume``).
        batch_size: images per forward pass.
        workers: image decoding threads.
        device: where the batches go (the model's device).
        resume: continue the run in ``out_dir``, skipping recorded images.
        max_pixels: refuse larger images (decompression-bomb guard).
        progress: ``progress(done, skipped)`` after each batch (done counts this call only).
        score_workers: processes that turn maps into boxes (the costly part on CPU: labelling
            one mask per map and threshold); 1 scores in a background thread while the next
            batch is explained.

    Returns:
        :class:`RunResult`. Records are on disk; read them with :func:`load_records`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if score_workers < 1:
        raise ValueError(f"score_workers must be >= 1, got {score_workers}")
    if not explainers:
        raise ValueError("no methods to evaluate")
    settings = settings or LocalizeSettings()
    out = Path(out_dir)
    methods = list(explainers)
    identity = fingerprint(dataset, methods, settings, preprocessing, model_info or {})
    open_run(out, identity, resume=resume, command="localize", parts="part-*.npz")
    done = recorded_keys(out) if resume else set()
    todo = [s for s in dataset.samples if s.key not in done]
    result = RunResult(already_done=len(dataset.samples) - len(todo))
    start = time.perf_counter()
    by_path = {s.path: s for s in todo}
    next_part = len(_part_files(out))
    grid = np.asarray(settings.grid)
    if score_workers > 1:
        import multiprocessing

        scorer: Executor = ProcessPoolExecutor(
            max_workers=score_workers, mp_context=multiprocessing.get_context("spawn")
        )
    else:
        scorer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eigencam-boxes")
    pending: list[Future] = []
    try:
        for images, failures in iter_batches(
            [s.path for s in todo],
            preprocessing,
            batch_size=batch_size,
            workers=workers,
            max_pixels=max_pixels,
        ):
            skipped = [(by_path[f.path].key, f.error) for f in failures]
            good: list[tuple[LoadedImage, Sample]] = []
            for img in images:
                sample = by_path[img.path]
                if sample.size is not None and tuple(sample.size) != tuple(img.size):
                    skipped.append(
                        (
                            sample.key,
                            f"the annotation is for a {sample.size[0]} x {sample.size[1]} image "
                            f"but the file is {img.size[0]} x {img.size[1]}",
                        )
                    )
                else:
                    good.append((img, sample))
            batch = _explain(good, explainers, preprocessing, device, skipped)
            stack, where, info = _batch_job(batch, preprocessing)
            pending.append(
                scorer.submit(
                    score_and_write,
                    stack,
                    where,
                    info,
                    skipped,
                    methods,
                    grid,
                    settings.connectivity,
                    out / RECORDS / f"part-{next_part:06d}.npz",
                )
            )
            next_part += 1
            result.evaluated += len(batch["samples"]) if batch else 0
            result.skipped.extend(skipped)
            while len(pending) > score_workers + 1:  # bound the memory held by queued batches
                pending.pop(0).result()
            pending = _drain(pending, block=False)
            if progress is not None:
                progress(result.evaluated + len(result.skipped), len(result.skipped))
        _drain(pending, block=True)
    finally:
        scorer.shutdown(wait=True)
        result.seconds = time.perf_counter() - start
    return result


def _drain(pending: list[Future], *, block: bool) -> list[Future]:
    """Collect finished scoring jobs (all of them with ``block``), re-raising their errors."""
    keep = []
    for fut in pending:
        if block or fut.done():
            fut.result()
        else:
            keep.append(fut)
    return keep


def classify(model: torch.nn.Module, x: Tensor) -> Tensor:
    """The model's logits for a batch, in eval mode, flags restored."""
    from eigencam.capture.hooks import preserved_state

    with torch.inference_mode(), preserved_state(model):
        return model(x)


def _logits(output: Any) -> Tensor | None:
    return output if isinstance(output, Tensor) and output.ndim == 2 else None


def _explain(
    items: list[tuple[LoadedImage, Sample]],
    explainers: Mapping[str, Explainer],
    pre: Preprocessing,
    device: Any,
    skipped: list[tuple[str, str]],
) -> dict[str, Any] | None:
    """Maps (slot 0 and slot 1) for a batch; an image with non-finite activations is skipped."""
    if not items:
        return None
    try:
        return _explain_batch(items, explainers, pre, device)
    except NonFiniteActivationError as err:
        if len(items) == 1:
            skipped.append((items[0][1].key, str(err)))
            return None
    parts = [_explain([item], explainers, pre, device, skipped) for item in items]
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    merged: dict[str, Any] = {"samples": [], "sizes": []}
    for p in parts:
        merged["samples"] += p["samples"]
        merged["sizes"] += p["sizes"]
    for k in ("logits_top", "logits_prob", "labels"):
        merged[k] = np.concatenate([p[k] for p in parts])
    merged["maps"] = [
        [
            np.concatenate([p["maps"][m][0] for p in parts]),
            np.concatenate([p["maps"][m][1 if p["maps"][m][1] is not None else 0] for p in parts]),
        ]
        for m in range(len(explainers))
    ]
    merged["layers"] = parts[0]["layers"]
    return merged


def _explain_batch(
    items: list[tuple[LoadedImage, Sample]],
    explainers: Mapping[str, Explainer],
    pre: Preprocessing,
    device: Any,
) -> dict[str, Any]:
    pixels = torch.from_numpy(np.stack([img.pixels for img, _ in items])).to(device)
    x = pre.normalize_batch(pixels)
    labels = torch.tensor(
        [s.label if s.label is not None else -1 for _, s in items], dtype=torch.long, device=device
    )
    logits = None
    maps: list[list[Tensor | None]] = []
    layers: list[str] = []
    for expl in explainers.values():
        if not getattr(expl, "class_specific", False):
            res = expl(x)
            maps.append([res.maps[:, 0], None])
            layers.append(res.layer)
            if logits is None:
                logits = _logits(res.output)
        else:
            maps.append([None, None])
            layers.append("")
    if logits is None:
        logits = _logits(classify(_model_of(explainers), x))
    if logits is None:
        raise EigenCAMError(
            "localize needs a classifier whose output is (B, classes) logits, for the top-1 / "
            "top-5 measures and the class methods' targets"
        )
    logits = logits.detach().float()
    k = min(TOP_K, logits.shape[1])
    prob, top = logits.softmax(dim=1).topk(k, dim=1)
    top1 = top[:, 0].to(device)
    labels_ok = labels < logits.shape[1]
    if not bool(labels_ok.all()):
        bad = [items[i][1].key for i in (~labels_ok).nonzero().flatten().tolist()]
        raise EigenCAMError(
            f"ground-truth class index >= the model's {logits.shape[1]} classes for {bad[:3]}; "
            "check the synset / class map for this model"
        )
    target0 = torch.where(labels >= 0, labels, top1)
    need = (labels >= 0) & (labels != top1)
    for m, expl in enumerate(explainers.values()):
        if not getattr(expl, "class_specific", False):
            continue
        res = expl(x, targets=target0)
        maps[m][0] = res.maps[:, 0]
        layers[m] = res.layer
        if bool(need.any()):
            idx = need.nonzero().flatten()
            extra = expl(x[idx], targets=top1[idx]).maps[:, 0]
            maps[m][1] = (idx, extra)
    out_maps = []
    for m0, m1 in maps:
        slot0 = bx.quantize(m0)
        slot1 = None
        if m1 is not None:
            idx, extra = m1
            slot1 = slot0.copy()
            slot1[idx.cpu().numpy()] = bx.quantize(extra)
        out_maps.append([slot0, slot1])
    return {
        "samples": [s for _, s in items],
        "sizes": [img.size for img, _ in items],
        "labels": labels.cpu().numpy(),
        "logits_top": top.cpu().numpy(),
        "logits_prob": prob.cpu().numpy(),
        "maps": out_maps,
        "layers": layers,
    }


def _model_of(explainers: Mapping[str, Explainer]) -> torch.nn.Module:
    return next(iter(explainers.values())).model


def _batch_job(
    batch: dict[str, Any] | None, pre: Preprocessing
) -> tuple[list[np.ndarray], list[tuple[int, int, int]], dict[str, np.ndarray]]:
    """Plain arrays for :func:`eigencam.evaluation.scoring.score_and_write` (picklable)."""
    if batch is None:
        return [], [], {}
    samples: list[Sample] = batch["samples"]
    n = len(samples)
    regions = np.array([pre.crop_region(w, h) for w, h in batch["sizes"]], dtype=np.float64)
    gt = bx.clip_to_region(bx.pad_boxes([s.boxes for s in samples]), regions)
    stack, where = [], []
    for mi, (slot0, slot1) in enumerate(batch["maps"]):
        stack.append(slot0)
        where += [(i, mi, 0) for i in range(n)]
        if slot1 is not None:  # the top-1 class's map, where it differs from the GT class's
            diff = np.flatnonzero((slot1 != slot0).reshape(n, -1).any(axis=1))
            if diff.size:
                stack.append(slot1[diff])
                where += [(int(i), mi, 1) for i in diff]
    info = {
        "keys": np.asarray([s.key for s in samples], dtype=str),
        "labels": batch["labels"].astype(np.int64),
        "logits_top": batch["logits_top"],
        "logits_prob": batch["logits_prob"],
        "sizes": np.asarray(batch["sizes"], dtype=np.int64).reshape(n, 2),
        "regions": regions,
        "gt": gt,
        "layers": np.asarray(batch["layers"], dtype=str),
    }
    return stack, where, info


# -- metrics --------------------------------------------------------------------------------
def summarize(
    records: Records,
    methods: Mapping[str, bool],
    settings: LocalizeSettings,
    calibration: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Both protocols for every method, from the records.

    Args:
        records: the run's records.
        methods: {method key: class_specific}, in table order.
        settings: the grids and IoU rules.
        calibration: {method key: {"paper": tau, "maxboxacc": tau, "maxboxacc_v2": {delta:
            tau}}} chosen on held-out data (:func:`calibration_from_metrics`), or None.

    Returns:
        {"classification": {...}, "methods": {key: {"paper": ..., "maxboxacc": ...,
        "maxboxacc_v2": ...}}}.
    """
    grid = settings.grid
    paper_cols = grid_columns(grid, settings.thresholds)
    choe_cols = grid_columns(grid, settings.box_grid)
    labels = records.labels
    known = labels >= 0
    top1 = records.top5[:, 0] if len(records) else np.zeros(0, dtype=np.int64)
    in5 = (records.top5 == labels[:, None]).any(axis=1) if len(records) else np.zeros(0, bool)
    out: dict[str, Any] = {
        "classification": {
            "images": len(records),
            "labelled": int(known.sum()),
            "top1_acc": float((top1 == labels)[known].mean()) if known.any() else None,
            "top5_acc": float(in5[known].mean()) if known.any() else None,
        },
        "methods": {},
    }
    for mi, (key, class_specific) in enumerate(methods.items()):
        cal = (calibration or {}).get(key) if calibration is not None else None
        if calibration is not None and cal is None:
            raise ValueError(
                f"the calibration run has no method {key!r}; calibrate with the same --methods"
            )
        iou_gt = records.iou[:, mi, 0].astype(np.float64)
        iou_top1 = records.iou[:, mi, 1].astype(np.float64)
        iou_all = records.iou_all[:, mi, 0].astype(np.float64)
        mask = known if class_specific else None
        out["methods"][key] = {
            "class_specific": bool(class_specific),
            "layer": records.layers.get(key),
            "paper": paper_protocol(
                iou_gt[:, paper_cols],
                iou_top1[:, paper_cols],
                labels,
                records.top5,
                settings.thresholds,
                class_specific=class_specific,
                iou_threshold=settings.iou_threshold,
                calibrated=None if cal is None else cal["paper"],
            ),
            "maxboxacc": maxboxacc(
                iou_gt[:, choe_cols],
                settings.box_grid,
                iou_threshold=settings.iou_threshold,
                mask=mask,
                calibrated=None if cal is None else cal["maxboxacc"],
            ),
            "maxboxacc_v2": maxboxacc_v2(
                iou_all[:, choe_cols],
                settings.box_grid,
                iou_thresholds=settings.v2_ious,
                mask=mask,
                calibrated=None if cal is None else cal["maxboxacc_v2"],
            ),
        }
    return out


def calibration_from_metrics(path: str | Path) -> dict[str, dict[str, Any]]:
    """Thresholds chosen by a finished run (its folder or ``metrics.json``), per method.

    The run's own best thresholds on its data are used (``best_threshold_on_this_data``), so a
    calibration run must itself be uncalibrated or its choices are taken from its calibration.
    """
    path = Path(path)
    metrics_file = path / "metrics.json" if path.is_dir() else path
    try:
        data = json.loads(metrics_file.read_text())
        out = {}
        for key, m in data["methods"].items():
            out[key] = {
                "paper": m["paper"]["best_threshold_on_this_data"],
                "maxboxacc": m["maxboxacc"]["best_threshold_on_this_data"],
                "maxboxacc_v2": dict(m["maxboxacc_v2"]["best_thresholds_on_this_data"]),
            }
        return out
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise EigenCAMError(
            f"--calibrate-on {path}: not a finished `eigencam localize` run ({err})"
        ) from None


def settings_dict(settings: LocalizeSettings) -> dict[str, Any]:
    """The settings as JSON."""
    d = asdict(settings)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
