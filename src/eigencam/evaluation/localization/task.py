"""``eigencam localize`` on the run loop: explain every image with every method, record boxes.

Images are decoded and resized in worker threads, explained in batches (every method on the same
batch, under the isolation policy of :func:`~eigencam.runs.isolate`), and each batch's maps are
turned into boxes for every threshold of the union of the two protocols' grids
(:func:`~eigencam.evaluation.localization.settings.score_part`) in a background thread, or in
``score_workers`` processes, while the next batch runs. The loop writes each scored batch, in
order and atomically, as ``records/part-NNNNNN.npz``: a killed run keeps every finished batch,
and ``resume`` skips the images already recorded. The metrics are computed from the records
alone (:mod:`eigencam.evaluation.localization.summary`).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from eigencam.errors import UnsupportedModelError, check, check_choice, check_range
from eigencam.evaluation import benchmark as bm
from eigencam.evaluation.datasets import Dataset, Sample
from eigencam.evaluation.localization.report import write_report
from eigencam.evaluation.localization.settings import TOP_K, LocalizeSettings, score_part
from eigencam.evaluation.localization.summary import (
    calibration_from_metrics,
    load_records,
    summarize,
)
from eigencam.postprocess import boxes as bx
from eigencam.runs.folder import RunFolder
from eigencam.runs.loop import Part, RunStats, gather
from eigencam.runs.source import Batch, LoadedImage
from eigencam.runs.step import classify, isolate, to_batch


@dataclass
class Explained:
    """One image's explanation.

    Attributes:
        top, prob: (K,) the top-k predicted classes, best first, and their probabilities.
        maps: per method, the uint8 (H, W) map of the ground-truth class (slot 0: the only map
            of a class-agnostic method) and the top-1 class's map where it is another class
            (slot 1, else None).
        layers: the layer each method used.
    """

    top: np.ndarray
    prob: np.ndarray
    maps: list[tuple[np.ndarray, np.ndarray | None]]
    layers: list[str]


def _logits(output: Any) -> Tensor | None:
    return output if isinstance(output, Tensor) and output.ndim == 2 else None


@dataclass
class LocalizeTask(bm.Benchmark):
    """``eigencam localize``: every method on every image, scored into boxes and IoUs; at the end
    both protocols and every output file (:mod:`eigencam.evaluation.localization.report`).

    Attributes:
        calibration: choose thresholds on held-out data instead of on ``dataset``: a finished run
            folder (or its ``metrics.json``), or a :class:`Dataset` evaluated first into
            ``out/calibration``.
        gallery: best and worst cases shown per method in ``report.html``.
        csv_thresholds: ``paper`` (the paper's sweep) or ``all`` (the whole grid) in
            ``per_image.csv``.
        calibration_progress: the progress callback of the calibration run.
        score_workers: processes that turn maps into boxes (the costly part on CPU: labelling
            one mask per map and threshold); 1 scores in a background thread while the next
            batch is explained.
    """

    command = "localize"
    settings_class = LocalizeSettings
    codec = "npz"
    batch_size = 16
    calibration: str | Path | Dataset | None = None
    gallery: int = 4
    csv_thresholds: str = "paper"
    calibration_progress: Callable[[Any], None] | None = None
    score_workers: int = 1
    calib: dict[str, Any] | None = field(default=None, init=False)
    calib_source: str | None = field(default=None, init=False)
    scorer: Executor | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("csv_thresholds", self.csv_thresholds, ("paper", "all"))
        check_range("score_workers", self.score_workers, 1)

    @property
    def methods(self) -> list[str]:
        return list(self.explainers)

    @property
    def in_flight(self) -> int:
        return self.score_workers + 1

    def identity(self) -> dict[str, Any]:
        return {
            "dataset": {"root": str(self.dataset.root), "format": self.dataset.format},
            "methods": self.methods,
            "grid": list(self.settings.grid),
            "connectivity": self.settings.connectivity,
            "preprocessing": self.pre.describe(),
            "model": {k: self.run_info.get(k) for k in ("model", "weights")},
        }

    def prepare(self) -> None:
        """The calibration run, when ``calibration`` is a dataset, and the thresholds it chose."""
        cal, info = self.calibration, self.run_info
        if isinstance(cal, Dataset):
            name = f"{info.get('name') or info.get('model')} (calibration)"
            cal_metrics = LocalizeTask.run(
                cal,
                self.model,
                self.pre,
                self.explainers,
                self.out / "calibration",
                settings=self.settings,
                run_info={**info, "name": name},
                labels=self.labels,
                run=replace(self.options, progress=self.calibration_progress),
                gallery=0,
                score_workers=self.score_workers,
            )
            self.calib = calibration_from_metrics(self.out / "calibration")
            images = cal_metrics["classification"]["images"]
            self.calib_source = f"held-out: {cal.root} ({images})"
        elif cal is not None:
            self.calib = calibration_from_metrics(cal)
            self.calib_source = f"held-out: thresholds of the run {cal}"

    def explain(self, pairs: list[tuple[LoadedImage, Sample]]) -> list[Explained]:
        """Every method's maps of the images (both slots) and the model's top-k classes."""
        device = self.options.device
        x = to_batch([img.pixels for img, _ in pairs], self.pre, device)
        labels = torch.tensor([-1 if s.label is None else s.label for _, s in pairs], device=device)
        maps: dict[str, tuple[np.ndarray, dict[int, np.ndarray]]] = {}
        layers: dict[str, str] = {}
        logits = None
        for key, expl in self.explainers.items():
            if not expl.class_specific:
                res = expl(x)
                maps[key], layers[key] = (bx.quantize(res.maps[:, 0]), {}), res.layer
                logits = _logits(res.output) if logits is None else logits
        if logits is None:
            logits = _logits(classify(self.model, x))
        if logits is None:
            raise UnsupportedModelError(
                "localize needs a classifier whose output is (B, classes) logits, for the top-1 "
                "/ top-5 measures and the class methods' targets"
            )
        logits = logits.detach().float()
        prob, top = logits.softmax(dim=1).topk(min(TOP_K, logits.shape[1]), dim=1)
        top1 = top[:, 0].to(device)
        bad = [pairs[i][1].key for i in (labels >= logits.shape[1]).nonzero().flatten().tolist()]
        check(
            not bad,
            f"ground-truth class index >= the model's {logits.shape[1]} classes for {bad[:3]}; "
            "check the synset / class map for this model",
        )
        target0 = torch.where(labels >= 0, labels, top1)
        need = ((labels >= 0) & (labels != top1)).nonzero().flatten()
        for key, expl in self.explainers.items():
            if expl.class_specific:
                res = expl(x, targets=target0)
                maps[key], layers[key] = (bx.quantize(res.maps[:, 0]), {}), res.layer
                if need.numel():  # the top-1 class's map where it is not the GT class
                    extra = bx.quantize(expl(x[need], targets=top1[need]).maps[:, 0])
                    maps[key][1].update(zip(need.tolist(), extra))
        top_np, prob_np = top.cpu().numpy(), prob.cpu().numpy()
        used = [layers[k] for k in self.methods]
        return [
            Explained(
                top_np[i],
                prob_np[i],
                [(maps[k][0][i], maps[k][1].get(i)) for k in self.methods],
                used,
            )
            for i in range(len(pairs))
        ]

    def process(self, batch: Batch) -> Future[Part]:
        if self.scorer is None:
            self.scorer = (
                ProcessPoolExecutor(self.score_workers, mp_context=get_context("spawn"))
                if self.score_workers > 1
                else ThreadPoolExecutor(1, thread_name_prefix="eigencam-boxes")
            )
        done = []
        for (img, sample), res, err in isolate(self.explain, self.sized(batch)):
            if err is None:
                done.append((img, sample, res))
            else:
                batch.fail(sample, str(err))
        skipped = [(f["key"], f["error"]) for f in batch.failures]
        stack, where, info = self._job(done)
        scored = self.scorer.submit(
            score_part, self.settings, stack, where, info, skipped, self.methods
        )
        return gather([scored], lambda: Part(scored.result(), ok=len(done), failed=len(skipped)))

    def _job(
        self, done: list[tuple[LoadedImage, Sample, Explained]]
    ) -> tuple[list[np.ndarray], list[tuple[int, int, int]], dict[str, np.ndarray]]:
        """Plain arrays for :func:`score_part` (picklable): the maps, stacked, with the (image,
        method, slot) of each, and the images' ground truth and predictions."""
        if not done:
            return [], [], {}
        n = len(done)
        samples = [s for _, s, _ in done]
        regions = np.array([self.pre.crop_region(*img.size) for img, _, _ in done], dtype=float)
        stack, where = [], []
        for mi in range(len(self.methods)):
            stack.append(np.stack([r.maps[mi][0] for _, _, r in done]))
            where += [(i, mi, 0) for i in range(n)]
            extra = [
                (i, r.maps[mi][1])
                for i, (_, _, r) in enumerate(done)
                if r.maps[mi][1] is not None and not np.array_equal(r.maps[mi][1], r.maps[mi][0])
            ]
            if extra:  # the top-1 class's map, where it differs from the GT class's
                stack.append(np.stack([m for _, m in extra]))
                where += [(i, mi, 1) for i, _ in extra]
        info = {
            "keys": np.asarray([s.key for s in samples], dtype=str),
            "labels": np.asarray([-1 if s.label is None else s.label for s in samples], np.int64),
            "logits_top": np.stack([r.top for _, _, r in done]),
            "logits_prob": np.stack([r.prob for _, _, r in done]),
            "sizes": np.asarray([img.size for img, _, _ in done], dtype=np.int64).reshape(n, 2),
            "regions": regions,
            "gt": bx.clip_to_region(bx.pad_boxes([s.boxes for s in samples]), regions),
            "layers": np.asarray(done[0][2].layers, dtype=str),
        }
        return stack, where, info

    def finish(self, folder: RunFolder, stats: RunStats) -> dict[str, Any] | None:
        """Both protocols and every output file; nothing when the run was interrupted."""
        if self.scorer is not None:
            self.scorer.shutdown(wait=True)
        if stats.interrupted:
            return None
        grid = self.settings.grid
        keys = {s.key for s in self.dataset.samples}
        records = load_records(self.out, self.methods, len(grid)).restrict(keys)
        ds = self.dataset
        metrics: dict[str, Any] = {
            **self.run_info,
            "command": self.run_info.get("command", "localize"),
            "settings": bm.settings_dict(self.settings),
            "preprocessing": self.pre.describe(),
            "dataset": {
                "root": str(ds.root),
                "format": ds.format,
                "images": len(ds.samples),
                "evaluated": len(records),
                "skipped": [list(s) for s in (*ds.skipped, *records.skipped)],
            },
            "calibration": (
                {"source": self.calib_source, "thresholds": self.calib} if self.calib else None
            ),
        }
        class_specific = {k: e.class_specific for k, e in self.explainers.items()}
        metrics.update(summarize(records, class_specific, self.settings, self.calib))
        metrics["timing"] = {
            "seconds_this_call": round(stats.seconds, 2),
            "images_this_call": stats.ok,
            "images_per_second": round(stats.ok / stats.seconds, 2) if stats.seconds > 0 else None,
            "resumed_images": stats.resumed,
        }
        write_report(self, metrics, records)
        return metrics


#: ``localize(dataset, model, preprocessing, explainers, out_dir, *, settings, calibration,
#: run_info, labels, run, gallery, csv_thresholds, calibration_progress, score_workers)``: see
#: :meth:`~eigencam.evaluation.benchmark.Benchmark.run` and :class:`LocalizeTask`. Returns the
#: ``metrics.json`` content; the records are also on disk
#: (:func:`~eigencam.evaluation.localization.summary.load_records`).
localize = LocalizeTask.run
