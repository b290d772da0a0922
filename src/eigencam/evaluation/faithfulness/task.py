"""``eigencam faithfulness`` on the run loop: explain a batch, add the baselines, score every
map."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from eigencam.errors import check
from eigencam.evaluation import benchmark as bm
from eigencam.evaluation.faithfulness.report import curves_plot, per_image_table, table_markdown
from eigencam.evaluation.faithfulness.settings import BASELINE_KEYS, CURVES, FaithfulnessSettings
from eigencam.evaluation.faithfulness.summary import summarize
from eigencam.evaluation.metrics.baselines import center_gaussian, key_seed, random_maps
from eigencam.evaluation.metrics.faithfulness import (
    Curve,
    average_drop_increase,
    deletion_insertion,
    road,
)
from eigencam.models.preprocessing import Preprocessing
from eigencam.runs.folder import RunRecords
from eigencam.runs.source import Batch
from eigencam.runs.step import to_batch


@dataclass
class FaithfulnessTask(bm.Benchmark):
    """``eigencam faithfulness``: one json part of rows and failures per batch."""

    command = "faithfulness"
    settings_class = FaithfulnessSettings
    uses_boxes = False

    def __post_init__(self) -> None:  # no method is fine: the baselines are still scored
        clash = [k for k in self.explainers if k in BASELINE_KEYS]
        check(not clash, f"method key(s) {clash} are reserved for the built-in baselines")

    def measure(self, batch: Batch) -> list[dict[str, Any]]:
        """Explain the batch with every method, add the baselines, score every map."""
        if not batch.items:
            return []
        items, pre, settings = batch.items, self.pre, self.settings
        x = to_batch([img.pixels for img, _ in items], pre, self.options.device)
        keys = [s.key for _, s in items]
        probs = bm.logits(self.model, x).softmax(1)
        pred = probs.argmax(1)
        size = tuple(x.shape[-2:])
        all_maps: dict[str, tuple[Tensor, dict[int, str]]] = {}
        # progress: explaining and scoring each of the methods and the two baselines
        step = len(keys) / (2 * len(self.explainers) + 2)
        for key, expl in self.explainers.items():
            specific = bool(getattr(expl, "class_specific", False))
            maps, errors = bm.method_maps(expl, x, pred[:, None] if specific else None)
            all_maps[key] = maps[:, 0], errors
            self.advance(step)
        all_maps["random"] = (random_maps(keys, size, seed=settings.seed, device=x.device), {})
        all_maps["center_gaussian"] = (
            center_gaussian(len(keys), size, sigma=settings.gaussian_sigma, device=x.device),
            {},
        )
        per_method: dict[str, dict[int, dict[str, Any]]] = {}
        for key, (maps, errors) in all_maps.items():
            ok = [i for i in range(len(keys)) if i not in errors]
            entries: dict[int, dict[str, Any]] = {i: {"error": errors[i]} for i in errors}
            if ok:
                idx = torch.tensor(ok, device=x.device)
                scored = score_maps(
                    self.model, x[idx], maps[idx], pred[idx], [keys[i] for i in ok], pre, settings
                )
                for j, i in enumerate(ok):
                    entries[i] = {
                        "error": None,
                        **{k: bm.num(v[j]) for k, v in scored["values"].items()},
                        "curves": {
                            k: [round(float(p), 5) for p in v[j]]
                            for k, v in scored["curves"].items()
                        },
                    }
            per_method[key] = entries
            self.advance(step)
        rows = []
        for i, (img, s) in enumerate(items):
            c = int(pred[i])
            rows.append(
                {
                    "key": s.key,
                    "file": str(img.path),
                    "label": s.label,
                    "predicted": c,
                    "predicted_name": bm.class_name(self.labels, c),
                    "prob": bm.num(probs[i, c]),
                    "methods": {k: v[i] for k, v in per_method.items()},
                }
            )
        return rows

    def summarize(self, records: RunRecords) -> dict[str, Any]:
        return summarize(records, [*self.explainers, *BASELINE_KEYS], self.settings)

    def write(self, metrics: Mapping[str, Any], records: RunRecords) -> None:
        header, rows = per_image_table(records, [*self.explainers, *BASELINE_KEYS])
        bm.write_outputs(self.out, table_markdown(metrics), header, rows, records.failures)
        if records.rows:
            curves_plot(self.out / "curves.png", metrics)


def score_maps(
    model: nn.Module,
    x: Tensor,
    maps: Tensor,
    targets: Tensor,
    keys: Sequence[str],
    pre: Preprocessing,
    settings: FaithfulnessSettings,
) -> dict[str, Any]:
    """Every metric for a batch of maps (B, H, W): per-image values (B,) and curves (B, S)."""
    common = dict(mean=pre.mean, std=pre.std, batch_size=settings.batch_size)
    di = {k: getattr(settings, k) for k in ("steps", "baseline", "constant", "blur_sigma")}
    dele, ins = (
        deletion_insertion(model, x, maps, targets, mode=mode, **di, **common)
        for mode in ("deletion", "insertion")
    )
    drop, inc = average_drop_increase(model, x, maps.clamp(0, 1), targets, **common)
    rd = dict(fractions=settings.road_fractions, noise=settings.road_noise, **common)
    morf, lerf = (
        _road_per_key(model, x, maps, targets, keys, order, settings, rd)
        for order in ("morf", "lerf")
    )
    return {
        "values": {
            "deletion_auc": dele.auc.numpy(),
            "insertion_auc": ins.auc.numpy(),
            "average_drop": 100 * drop.numpy(),
            "increase": 100 * inc.numpy().astype(np.float64),
            "road_morf": morf.auc.numpy(),
            "road_lerf": lerf.auc.numpy(),
            "road_combined": (lerf.auc.numpy() - morf.auc.numpy()) / 2,
        },
        "curves": {k: c.probs.numpy() for k, c in zip(CURVES, (dele, ins, morf, lerf))},
    }


def _road_per_key(
    model: nn.Module,
    x: Tensor,
    maps: Tensor,
    targets: Tensor,
    keys: Sequence[str],
    order: str,
    settings: FaithfulnessSettings,
    kwargs: Mapping[str, Any],
) -> Curve:
    """:func:`road` image by image, each image's imputation noise seeded by its key.

    :func:`road` seeds image i of its batch with ``seed + i``; calling it per image with a
    seed drawn from the key makes an image's score independent of the batch it falls in (and of
    a resumed run's batching). The sparse imputation, not the model call, dominates its cost.
    """
    curves = [
        road(
            model,
            x[i : i + 1],
            maps[i : i + 1],
            targets[i : i + 1],
            order=order,
            seed=key_seed(str(k), settings.seed) % (2**31),
            **kwargs,
        )
        for i, k in enumerate(keys)
    ]
    return Curve(
        curves[0].fractions,
        torch.cat([c.probs for c in curves]),
        torch.cat([c.auc for c in curves]),
    )


#: ``run_faithfulness(dataset, model, preprocessing, explainers, out_dir, *, settings, run_info,
#: labels, run)``: see :meth:`~eigencam.evaluation.benchmark.Benchmark.run`.
run_faithfulness = FaithfulnessTask.run
