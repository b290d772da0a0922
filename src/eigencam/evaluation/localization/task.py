"""``eigencam localize`` on the run loop: explain every image with every method, record boxes.

:func:`run_localization` runs a :class:`LocalizeTask` with :func:`~eigencam.runs.run_task`:
images are decoded and resized in worker threads, explained in batches (every method on the
same batch, under the isolation policy of :func:`~eigencam.runs.isolate`), and each batch's maps
are turned into boxes for every threshold of the union of the two protocols' grids
(:func:`~eigencam.evaluation.localization.settings.score_part`) in a background thread, or in
``score_workers`` processes, while the next batch runs. The loop writes each scored batch, in
order and atomically, as ``records/part-NNNNNN.npz``: a killed run keeps every finished batch,
and ``resume`` skips the images already recorded. The metrics are computed from the records
alone (:mod:`eigencam.evaluation.localization.summary`).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Mapping
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from eigencam.errors import UnsupportedModelError, check, check_range
from eigencam.evaluation.datasets import Dataset, Sample
from eigencam.evaluation.localization.settings import LocalizeSettings, score_part
from eigencam.evaluation.scoring import TOP_K
from eigencam.methods.base import Explainer
from eigencam.models.preprocessing import Preprocessing
from eigencam.postprocess import boxes as bx
from eigencam.runs.folder import RunFolder
from eigencam.runs.loop import Part, RunStats, gather, run_task
from eigencam.runs.options import RunOptions
from eigencam.runs.source import Batch, LoadedImage, image_batches, size_mismatch
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


class LocalizeTask:
    """``eigencam localize``: every method on every image, scored into boxes and IoUs."""

    def __init__(
        self,
        model: nn.Module,
        explainers: Mapping[str, Explainer],
        preprocessing: Preprocessing,
        settings: LocalizeSettings,
        *,
        device: Any,
        score_workers: int = 1,
    ) -> None:
        self.model, self.explainers, self.pre = model, explainers, preprocessing
        self.settings, self.device, self.methods = settings, device, list(explainers)
        self.scorer: Executor = (
            ProcessPoolExecutor(score_workers, mp_context=multiprocessing.get_context("spawn"))
            if score_workers > 1
            else ThreadPoolExecutor(1, thread_name_prefix="eigencam-boxes")
        )

    def explain(self, pairs: list[tuple[LoadedImage, Sample]]) -> list[Explained]:
        """Every method's maps of the images (both slots) and the model's top-k classes."""
        x = to_batch([img.pixels for img, _ in pairs], self.pre, self.device)
        labels = torch.tensor(
            [-1 if s.label is None else s.label for _, s in pairs], device=self.device
        )
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
        top1 = top[:, 0].to(self.device)
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
        good = []
        for img, sample in batch.items:
            why = size_mismatch(img, sample)
            if why is None:
                good.append((img, sample))
            else:
                batch.fail(sample, why)
        done = []
        for (img, sample), res, err in isolate(self.explain, good):
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

    def finish(self, folder: RunFolder, stats: RunStats) -> RunStats:
        self.scorer.shutdown(wait=True)
        return stats


def run_localization(
    dataset: Dataset,
    model: nn.Module,
    preprocessing: Preprocessing,
    explainers: Mapping[str, Explainer],
    out_dir: str | Path,
    *,
    settings: LocalizeSettings | None = None,
    model_info: Mapping[str, Any] | None = None,
    run: RunOptions | None = None,
    score_workers: int = 1,
) -> RunStats:
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
        run: batch size (default 16), workers, device, resume/overwrite, max_pixels, progress.
        score_workers: processes that turn maps into boxes (the costly part on CPU: labelling
            one mask per map and threshold); 1 scores in a background thread while the next
            batch is explained.

    Returns:
        The run's :class:`~eigencam.runs.RunStats` (``ok``: images evaluated by this call,
        ``failed``: skipped). Records are on disk; read them with
        :func:`~eigencam.evaluation.localization.summary.load_records`.
    """
    check(bool(explainers), "no methods to evaluate")
    check_range("score_workers", score_workers, 1)
    settings = settings or LocalizeSettings()
    run = run or RunOptions(batch_size=16)
    identity = {  # what must not change between a run and its resumption
        "dataset": {"root": str(dataset.root), "format": dataset.format},
        "methods": list(explainers),
        "grid": list(settings.grid),
        "connectivity": settings.connectivity,
        "preprocessing": preprocessing.describe(),
        "model": dict(model_info or {}),
    }
    folder = RunFolder(out_dir, identity, command="localize", codec="npz")
    task = LocalizeTask(
        model, explainers, preprocessing, settings, device=run.device, score_workers=score_workers
    )
    return run_task(
        task,
        folder,
        dataset.samples,
        run,
        lambda todo: image_batches(todo, preprocessing, run),
        in_flight=score_workers + 1,
    )
