r"""``attack``: do explanations survive an adversarial example? (Section IV-B, Figure 4 of the
Eigen-CAM paper.)

For each image the classifier is attacked with DeepFool (:func:`eigencam.attacks.deepfool`,
multi-class, in the model's input space, kept inside the valid pixel range), and every method
explains the clean image and the adversarial one. What a user would see is compared:

- class-specific methods explain the clean image's predicted class on the clean image and the
  adversarial class on the adversarial image (variant ``adversarial``, the one of the tables);
  the variant ``same_class`` explains the clean class on the adversarial image too (one more
  target in the same call), which separates "the map follows the new class" from "the features
  changed";
- class-agnostic methods (Eigen-CAM) have one map per image; their ``same_class`` variant is
  the ``adversarial`` one;
- optionally (``noise_control``) the clean map is also compared with the map of the image plus
  Gaussian noise of the same L2 norm as the adversarial perturbation: how much of the change is
  due to the perturbation being adversarial rather than merely present.

Per image and method: Pearson correlation, SSIM and IoU of the top-15% regions of the two maps
(:mod:`eigencam.evaluation.metrics.similarity`, on the maps at the model's input resolution,
where the
adversarial image lives), the IoU of the two localization boxes (the paper's protocol: the
largest connected component of the map thresholded at a stated fraction of its maximum,
:mod:`eigencam.evaluation.boxes`), and whether each box localizes the object (IoU >= 0.5 with
a ground-truth box). Aggregates (median and interquartile range over the images whose attack
succeeded, paired comparisons with a reference method) go to ``metrics.json`` and
``table.md``, every number to ``per_image.csv``, and one figure per image in the layout of
Figure 4 to ``figures/``.

:func:`run_attack` runs an :class:`AttackTask` on the run loop (:func:`~eigencam.runs.run_task`):
runs are resumable, and an interrupted run still writes the outputs of what finished. An image
that cannot be read or attacked is a recorded failure; a method failing on an image (an
:class:`~eigencam.errors.EigenCAMError`) leaves that method's cells of the image empty.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from eigencam.attacks.deepfool import DeepFoolResult, deepfool, input_bounds
from eigencam.errors import TargetError, check, check_range
from eigencam.evaluation import benchmark as bm
from eigencam.evaluation.datasets import Dataset, Sample
from eigencam.evaluation.metrics.baselines import key_seed
from eigencam.evaluation.metrics.similarity import pearson, ssim, top_region_iou
from eigencam.evaluation.metrics.stats import describe, paired_difference, rate
from eigencam.io.png import write_png
from eigencam.methods.base import Explainer
from eigencam.models.preprocessing import Preprocessing
from eigencam.postprocess import boxes as bx
from eigencam.runs.folder import RunFolder, RunRecords
from eigencam.runs.loop import Part, RunStats, run_task
from eigencam.runs.options import RunOptions
from eigencam.runs.source import Batch, LoadedImage, image_batches, size_mismatch
from eigencam.runs.step import RUN_ERRORS, isolate, to_batch
from eigencam.viz.adversarial import MethodCells, adversarial_figure

VARIANTS = ("adversarial", "same_class", "noise")
MEASURES = ("pearson", "ssim", "top_iou", "box_iou")
MEASURE_TITLES = {
    "pearson": "Pearson r",
    "ssim": "SSIM",
    "top_iou": "top-{pct}% IoU",
    "box_iou": "box IoU",
}
# Errors that say the model cannot be attacked at all: they stop the run instead of being
# recorded for every image.
_ATTACK_RUN_ERRORS = (*RUN_ERRORS, TargetError)


# -- settings -------------------------------------------------------------------------------
@dataclass(frozen=True)
class AttackSettings:
    """What is attacked and measured.

    Attributes:
        candidates: DeepFool's candidate classes (the clean top-``candidates``, 10 in the paper).
        overshoot: DeepFool's overshoot (0.02).
        max_iter: DeepFool's maximum number of steps (50).
        box_threshold: fraction of the map's maximum for the localization box (paper protocol).
        method_thresholds: per-method thresholds overriding ``box_threshold`` (e.g. the ones a
            localize run chose).
        top_fraction: share of pixels in the top regions compared by ``top_iou``.
        iou_threshold: IoU with a ground-truth box for a box to localize the object.
        connectivity: 8 or 4 for the connected components.
        same_class: also explain the clean class on the adversarial image (class methods).
        noise_control: also compare with Gaussian noise of the adversarial perturbation's norm.
        seed: seed of the noise control (mixed with each image's key).
    """

    candidates: int = 10
    overshoot: float = 0.02
    max_iter: int = 50
    box_threshold: float = 0.15
    method_thresholds: Mapping[str, float] = field(default_factory=dict)
    top_fraction: float = 0.15
    iou_threshold: float = 0.5
    connectivity: int = 8
    same_class: bool = True
    noise_control: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        check_range("candidates", self.candidates, 2)
        check_range("overshoot", self.overshoot, 0)
        check_range("max_iter", self.max_iter, 1)
        for name, v in (("box_threshold", self.box_threshold), *self.method_thresholds.items()):
            check(0.0 <= float(v) < 1.0, f"threshold of {name} must be in [0, 1), got {v}")
        for name in ("top_fraction", "iou_threshold"):
            v = getattr(self, name)
            check(0.0 < v <= 1.0, f"{name} must be in (0, 1], got {v}")
        bx.structure(self.connectivity)

    def threshold(self, method: str) -> float:
        """The box threshold of a method."""
        return float(self.method_thresholds.get(method, self.box_threshold))

    def variants(self) -> tuple[str, ...]:
        """The variants measured, in table order."""
        return variants_of({"same_class": self.same_class, "noise_control": self.noise_control})


def variants_of(settings: Mapping[str, Any]) -> tuple[str, ...]:
    """The variants of a run from its settings dict."""
    out = ["adversarial"]
    if settings.get("same_class"):
        out.append("same_class")
    if settings.get("noise_control"):
        out.append("noise")
    return tuple(out)


# -- per-batch work -------------------------------------------------------------------------
def _attack(
    model: nn.Module, x: Tensor, settings: AttackSettings, pre: Preprocessing
) -> tuple[DeepFoolResult | None, list[int], dict[int, str]]:
    """DeepFool on the batch under the isolation policy. Returns (result of the images that
    were attacked, their indices, {index: error})."""
    bounds = input_bounds(pre.mean, pre.std, x.device)
    scale = torch.tensor(pre.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)

    def attack(rows: list[int]) -> list[tuple[DeepFoolResult, int]]:
        res = deepfool(
            model,
            x[rows],
            candidates=settings.candidates,
            overshoot=settings.overshoot,
            max_iter=settings.max_iter,
            bounds=bounds,
            pixel_scale=scale,
        )
        return [(res, j) for j in range(len(rows))]

    outcomes = isolate(attack, list(range(x.shape[0])), _ATTACK_RUN_ERRORS)
    done = [(i, res) for i, res, err in outcomes if err is None]
    errors = {i: bm.error_text(err) for i, _, err in outcomes if err is not None}
    if not done:
        return None, [], errors
    merged = {
        f: torch.cat([getattr(r, f)[j : j + 1] for _, (r, j) in done])
        for f in DeepFoolResult.__dataclass_fields__
    }
    return DeepFoolResult(**merged), [i for i, _ in done], errors


def _boxes(
    maps: Tensor, threshold: float, connectivity: int, regions: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Largest-component boxes of (N, H, W) maps: (in map pixels, in original pixels), (N, 4)."""
    u8 = bx.quantize(torch.nan_to_num(maps, nan=0.0))
    comps = bx.connected_components(u8, np.array([threshold]), connectivity=connectivity)
    local = comps.largest[:, 0]
    original = bx.to_original(local[:, None, :], regions, tuple(maps.shape[-2:]))[:, 0]
    return local, original


def _noise_images(
    x: Tensor, l2: Tensor, keys: Sequence[str], pre: Preprocessing, seed: int
) -> Tensor:
    """x plus Gaussian noise whose L2 norm in [0, 1] pixel units is ``l2``, kept in range."""
    std = torch.tensor(pre.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    noise = torch.empty_like(x)
    for i, key in enumerate(keys):
        gen = torch.Generator().manual_seed(key_seed(str(key), seed))
        noise[i] = torch.randn(x.shape[1:], generator=gen).to(x.device, x.dtype)
    noise = noise / noise.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    noise = noise * l2.to(x.dtype).view(-1, 1, 1, 1) / std  # pixel units -> input units
    low, high = input_bounds(pre.mean, pre.std, x.device)
    return torch.maximum(torch.minimum(x + noise, high), low)


def _prediction(labels: Sequence[str] | None, c: int, p: Tensor) -> dict[str, Any]:
    return {"class": c, "name": bm.class_name(labels, c), "prob": bm.num(p[c])}


def _variant_maps(
    expl: Explainer,
    settings: AttackSettings,
    x: Tensor,
    x_adv: Tensor,
    x_noise: Tensor | None,
    clean_c: Tensor,
    adv_c: Tensor,
    noise_c: Tensor | None,
) -> tuple[dict[str, Tensor], dict[int, str]]:
    """One method's (N, H, W) maps of the clean image and of each variant, and its errors."""
    specific = bool(getattr(expl, "class_specific", False))
    adv_targets = torch.stack([adv_c, clean_c], 1) if settings.same_class else adv_c[:, None]
    calls = [("clean", x, clean_c[:, None]), ("adversarial", x_adv, adv_targets)]
    if x_noise is not None and noise_c is not None:
        calls.append(("noise", x_noise, noise_c[:, None]))
    maps: dict[str, Tensor] = {}
    errors: dict[int, str] = {}
    for name, xs, targets in calls:
        m, e = bm.method_maps(expl, xs, targets if specific else None)
        maps[name] = m[:, 0]
        if name == "adversarial" and specific and settings.same_class:
            maps["same_class"] = m[:, 1]
        errors.update(e)
    return maps, errors


def _measure(
    maps: Mapping[str, Tensor],
    errors: Mapping[int, str],
    regions: np.ndarray,
    gt: np.ndarray,
    settings: AttackSettings,
    threshold: float,
) -> dict[str, Any]:
    """Similarities of each variant's maps with the clean maps, boxes and localization."""
    clean = maps["clean"]
    local, original, loc = {}, {}, {}
    for name, m in maps.items():
        local[name], original[name] = _boxes(m, threshold, settings.connectivity, regions)
        loc[name] = bx.best_iou(original[name][:, None, :], gt)[:, 0]
    values: dict[str, dict[str, np.ndarray]] = {}
    for name, m in maps.items():
        if name == "clean":
            continue
        values[name] = {
            "pearson": pearson(clean, m).cpu().numpy(),
            "ssim": ssim(clean, m).cpu().numpy(),
            "top_iou": top_region_iou(clean, m, settings.top_fraction).cpu().numpy(),
            "box_iou": bx.box_iou(original["clean"], original[name]),
        }
    rows = []
    for i in range(clean.shape[0]):
        if i in errors:
            rows.append({"error": errors[i]})
            continue
        r: dict[str, Any] = {
            "error": None,
            "clean": {"box": _box(original["clean"][i]), "loc_iou": bm.num(loc["clean"][i])},
        }
        for name, vals in values.items():
            r[name] = {k: bm.num(v[i]) for k, v in vals.items()}
            r[name].update(box=_box(original[name][i]), loc_iou=bm.num(loc[name][i]))
        rows.append(r)
    np_maps = {k: v.cpu().numpy() for k, v in maps.items()}
    return {"rows": rows, "maps": np_maps, "local": local}


def _box(b: np.ndarray) -> list[float] | None:
    return None if not np.all(np.isfinite(b)) else [round(float(v), 2) for v in b]


def _to_uint8(x: Tensor, pre: Preprocessing) -> np.ndarray:
    mean = torch.tensor(pre.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    std = torch.tensor(pre.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    pix = (x * std + mean).clamp(0, 1).mul(255).round().byte()
    return pix.permute(1, 2, 0).cpu().numpy()


def _to_input(boxes: np.ndarray, region: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Boxes in original pixels -> the model input's pixels (inverse of boxes.to_original)."""
    h, w = size
    x0, y0, x1, y1 = (float(v) for v in region)
    sx, sy = w / (x1 - x0), h / (y1 - y0)
    out = np.asarray(boxes, dtype=np.float64).copy()
    out[..., 0::2] = (out[..., 0::2] - x0) * sx
    out[..., 1::2] = (out[..., 1::2] - y0) * sy
    return out


# -- the task -------------------------------------------------------------------------------
@dataclass
class AttackTask:
    """``eigencam attack`` on the run loop: one part of rows and failures per batch, figures
    written before their part; the outputs from the folder's records."""

    dataset: Dataset
    model: nn.Module
    pre: Preprocessing
    explainers: Mapping[str, Explainer]
    out: Path
    settings: AttackSettings
    run_info: Mapping[str, Any]
    labels: Sequence[str] | None
    device: Any
    figures: bool
    tile: int
    reference: str | None

    def process(self, batch: Batch) -> Part:
        items = []
        for img, sample in batch.items:
            why = size_mismatch(img, sample)
            if why is None:
                items.append((img, sample))
            else:
                batch.fail(sample, why)
        rows = self._measure_batch(items, batch) if items else []
        return Part({"rows": rows, "failures": batch.failures}, len(rows), len(batch.failures))

    def _measure_batch(self, items: list[tuple[LoadedImage, Sample]], batch: Batch) -> list:
        """Attack the images, explain both versions with every method, measure, draw the
        figures; one row per image (the images that cannot be attacked fail in ``batch``)."""
        model, pre, settings, labels = self.model, self.pre, self.settings, self.labels
        x = to_batch([img.pixels for img, _ in items], pre, self.device)
        adv, kept, errors = _attack(model, x, settings, pre)
        for i, err in errors.items():
            batch.fail(items[i][1], f"attack: {err}")
        if adv is None:
            return []
        items = [items[i] for i in kept]
        x = x[kept]
        keys = [s.key for _, s in items]
        clean_p = adv.clean_logits.softmax(1)
        adv_p = adv.adversarial_logits.softmax(1)
        clean_c, adv_c = adv.clean_label, adv.adversarial_label
        x_adv = adv.adversarial
        regions = np.array([pre.crop_region(*img.size) for img, _ in items], dtype=np.float64)
        gt = bx.clip_to_region(bx.pad_boxes([s.boxes for _, s in items]), regions)
        x_noise = noise_c = noise_p = None
        if settings.noise_control:
            x_noise = _noise_images(x, adv.l2, keys, pre, settings.seed)
            noise_p = bm.logits(model, x_noise).softmax(1)
            noise_c = noise_p.argmax(1)
        per_method: dict[str, dict[str, Any]] = {}
        for key, expl in self.explainers.items():
            maps, errs = _variant_maps(expl, settings, x, x_adv, x_noise, clean_c, adv_c, noise_c)
            per_method[key] = _measure(maps, errs, regions, gt, settings, settings.threshold(key))
            per_method[key]["class_specific"] = bool(getattr(expl, "class_specific", False))
        rows = []
        for i, (img, s) in enumerate(items):
            c, a = int(clean_c[i]), int(adv_c[i])
            row: dict[str, Any] = {
                "key": s.key,
                "file": str(img.path),
                "label": s.label,
                "label_name": None if s.label is None else bm.class_name(labels, s.label),
                "width": int(img.size[0]),
                "height": int(img.size[1]),
                "clean": _prediction(labels, c, clean_p[i]),
                "adversarial": {
                    **_prediction(labels, a, adv_p[i]),
                    "prob_of_clean_class": bm.num(adv_p[i, c]),
                },
                "attack": {
                    "success": bool(adv.success[i]),
                    "iterations": int(adv.iterations[i]),
                    "l2": bm.num(adv.l2[i]),
                    "linf": bm.num(adv.linf[i]),
                    "rho": bm.num(adv.rho[i]),
                },
                "methods": {k: v["rows"][i] for k, v in per_method.items()},
            }
            if noise_c is not None and noise_p is not None:
                row["noise"] = _prediction(labels, int(noise_c[i]), noise_p[i])
            rows.append(row)
            if self.figures:  # before the part: a resumed run never lacks a figure
                job = {
                    "row": row,
                    "clean": img.pixels,
                    "adversarial": _to_uint8(x_adv[i], pre),
                    "gt": _to_input(gt[i], regions[i], tuple(x.shape[-2:])),
                    "maps": {
                        k: (v["maps"]["clean"][i], v["maps"]["adversarial"][i])
                        for k, v in per_method.items()
                    },
                    "boxes": {
                        k: (v["local"]["clean"][i], v["local"]["adversarial"][i])
                        for k, v in per_method.items()
                    },
                    "class_specific": {k: v["class_specific"] for k, v in per_method.items()},
                }
                render_figure(job, self.out, self.tile)
        return rows

    def finish(self, folder: RunFolder, stats: RunStats) -> dict[str, Any]:
        records = folder.records().restrict({s.key for s in self.dataset.samples})
        metrics = bm.metrics_head(
            self.run_info, "attack", self.settings, self.dataset, stats, preprocessing=self.pre
        )
        specific = {
            k: bool(getattr(e, "class_specific", False)) for k, e in self.explainers.items()
        }
        metrics.update(summarize(records, specific, self.settings, reference=self.reference))
        header, rows = per_image_table(records, list(self.explainers), self.settings)
        bm.write_outputs(
            folder.path, metrics, table_markdown(metrics), header, rows, records.failures
        )
        return metrics


def run_attack(
    dataset: Dataset,
    model: nn.Module,
    preprocessing: Preprocessing,
    explainers: Mapping[str, Explainer],
    out_dir: str | Path,
    *,
    settings: AttackSettings | None = None,
    run_info: Mapping[str, Any] | None = None,
    labels: Sequence[str] | None = None,
    run: RunOptions | None = None,
    figures: bool = True,
    tile: int = 224,
    reference: str | None = "eigencam",
) -> dict[str, Any]:
    """Attack every image of ``dataset`` and compare every method's clean and adversarial maps.

    Args:
        dataset: images with ground-truth boxes (:func:`~eigencam.evaluation.open_dataset`).
        model: the classifier (its output must be (B, classes) logits).
        preprocessing: the model's input preprocessing.
        explainers: {method key: explainer}, in table order.
        out_dir: output folder (``metrics.json``, ``table.md``, ``per_image.csv``,
            ``figures/``, ``run.json``, ``records/``).
        settings: the attack and the measures (default :class:`AttackSettings`).
        run_info: provenance for ``metrics.json`` (model, weights, command...).
        labels: class names.
        run: batch size (images attacked and explained together), workers, device,
            resume/overwrite, max_pixels, progress (default :class:`~eigencam.runs.RunOptions`).
        figures: write ``figures/<image>.png``.
        tile: cell size of the figures.
        reference: the method the others are compared with (paired differences); skipped when
            it is not among the explainers.

    Returns:
        The ``metrics.json`` content (written also when the run is interrupted).
    """
    check(bool(explainers), "attack needs at least one method")
    settings = settings or AttackSettings()
    run = run or RunOptions()
    info = dict(run_info or {})
    identity = bm.run_identity(dataset, list(explainers), settings, preprocessing, info)
    folder = RunFolder(out_dir, identity, command="attack")
    task = AttackTask(
        dataset,
        model,
        preprocessing,
        explainers,
        out=folder.path,
        settings=settings,
        run_info=info,
        labels=labels,
        device=run.device,
        figures=figures,
        tile=tile,
        reference=reference,
    )
    return run_task(
        task, folder, dataset.samples, run, lambda todo: image_batches(todo, preprocessing, run)
    )


# -- summary --------------------------------------------------------------------------------
def _values(rows: Sequence[Mapping[str, Any]], method: str, variant: str, measure: str) -> list:
    out = []
    for r in rows:
        m = r["methods"].get(method) or {}
        v = (m.get(variant) or {}).get(measure) if not m.get("error") else None
        out.append(np.nan if v is None else v)
    return out


def _ok(rows: Sequence[Mapping[str, Any]], method: str, variant: str) -> list[Mapping[str, Any]]:
    """Rows where the method ran and has the variant."""
    return [
        r
        for r in rows
        if not (r["methods"].get(method) or {}).get("error")
        and variant in (r["methods"].get(method) or {})
    ]


def summarize(
    records: RunRecords,
    methods: Mapping[str, bool],
    settings: AttackSettings,
    *,
    reference: str | None = "eigencam",
) -> dict[str, Any]:
    """Aggregates of a run's records.

    Similarities are summarised over the images whose attack succeeded (the label changed) and
    where the method ran; localization rates likewise. ``comparisons`` pairs each method with
    ``reference`` on the same images: median difference (reference minus method) of each
    similarity with a bootstrap 95% interval, the share of images where the reference's maps
    are more similar, and a Wilcoxon signed-rank p-value.

    Returns:
        ``{"attack": {...}, "methods": {key: {...}}, "comparisons": {...}, "failures": [...]}``.
    """
    rows = records.rows
    success = [r for r in rows if r["attack"]["success"]]
    labelled = [r for r in rows if r.get("label") is not None]
    attack = {
        "images": len(rows),
        "failures": len(records.failures),
        "success": rate([r["attack"]["success"] for r in rows]),
        "l2": describe([r["attack"]["l2"] for r in success]),
        "linf": describe([r["attack"]["linf"] for r in success]),
        "rho": describe([r["attack"]["rho"] for r in success]),
        "iterations": describe([r["attack"]["iterations"] for r in success]),
        "clean_top1_acc": rate([r["clean"]["class"] == r["label"] for r in labelled]),
        "adversarial_top1_acc": rate([r["adversarial"]["class"] == r["label"] for r in labelled]),
        "adversarial_prob": describe([r["adversarial"]["prob"] for r in success]),
        "clean_prob": describe([r["clean"]["prob"] for r in success]),
    }
    if settings.noise_control:
        noisy = [r for r in success if "noise" in r]
        attack["noise_changed_class"] = rate(
            [r["noise"]["class"] != r["clean"]["class"] for r in noisy]
        )
    thr = settings.iou_threshold
    out_methods: dict[str, Any] = {}
    for key, specific in methods.items():
        entry: dict[str, Any] = {
            "class_specific": specific,
            "box_threshold": settings.threshold(key),
            "images": len(_ok(success, key, "adversarial")),
            "failed_images": sum(bool((r["methods"].get(key) or {}).get("error")) for r in rows),
        }
        for variant in settings.variants():
            if variant == "same_class" and not specific:
                entry[variant] = "same as adversarial (class-agnostic)"
                continue
            ok = _ok(success, key, variant)
            v: dict[str, Any] = {m: describe(_values(ok, key, variant, m)) for m in MEASURES}
            clean_loc = np.array(_values(ok, key, "clean", "loc_iou"), dtype=np.float64) >= thr
            var_loc = np.array(_values(ok, key, variant, "loc_iou"), dtype=np.float64) >= thr
            v["localization"] = {
                "clean": rate(clean_loc),
                variant: rate(var_loc),
                "kept": rate(var_loc[clean_loc]),
            }
            entry[variant] = v
        out_methods[key] = entry
    comparisons: dict[str, Any] = {}
    if reference in methods:
        for key in methods:
            if key == reference:
                continue
            ref_keys = {r["key"] for r in _ok(success, reference, "adversarial")}
            both = [r for r in _ok(success, key, "adversarial") if r["key"] in ref_keys]
            comparisons[key] = {
                m: paired_difference(
                    _values(both, reference, "adversarial", m), _values(both, key, "adversarial", m)
                )
                for m in ("pearson", "ssim", "top_iou")
            }
    return {
        "attack": attack,
        "methods": out_methods,
        "reference": reference if reference in methods else None,
        "comparisons": comparisons,
        "failures": records.failures,
    }


# -- report ---------------------------------------------------------------------------------
def _pct(r: Mapping[str, Any] | None) -> str:
    if not r or r.get("rate") is None:
        return "-"
    return f"{100 * r['rate']:.0f}% ({r['count']}/{r['n']})"


def _fmt(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _diff(d: Mapping[str, Any]) -> str:
    if d["median_difference"] is None:
        return "-"
    lo, hi = d["ci95"]
    return f"{d['median_difference']:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def table_markdown(metrics: Mapping[str, Any]) -> str:
    """``table.md``: the attack, then one table per variant, then the paired comparisons."""
    s = metrics["settings"]
    a = metrics["attack"]
    pct = round(100 * s["top_fraction"])
    lines = [
        "### DeepFool attack",
        "",
        f"_candidates {s['candidates']}, overshoot {s['overshoot']}, at most {s['max_iter']} "
        "steps, in the model's input space, kept inside the valid pixel range; norms in [0, 1] "
        "pixel units over the successful attacks; rho = L2 / ||x||._",
        "",
        "| images | success | L2 | Linf | rho | steps | top-1 acc clean -> adversarial |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {a['images']} | {_pct(a['success'])} | {bm.cell(a['l2'], 3)} | {bm.cell(a['linf'], 4)} "
        f"| {bm.cell(a['rho'], 4)} | {bm.cell(a['iterations'], 0)} | "
        f"{_pct(a['clean_top1_acc'])} -> {_pct(a['adversarial_top1_acc'])} |",
        "",
    ]
    titles = {
        "adversarial": "Clean vs adversarial maps (class methods: clean class on the clean image, "
        "adversarial class on the adversarial image)",
        "same_class": "Clean vs adversarial maps, same class on both (the clean class)",
        "noise": "Clean vs noisy maps (Gaussian noise of the adversarial perturbation's L2 norm)",
    }
    for variant in [v for v in VARIANTS if v in variants_of(s)]:
        cols = [MEASURE_TITLES[m].format(pct=pct) for m in MEASURES]
        lines += [
            f"### {titles[variant]}",
            "",
            "_Median [interquartile range] over the images whose attack succeeded; localizes: "
            f"the box (threshold per method below) reaches IoU {s['iou_threshold']} with a "
            "ground-truth box._",
            "",
            "| Method | " + " | ".join(cols) + " | localizes (clean) | localizes (after) | "
            "kept | box thr. | n |",
            "|---|" + "---:|" * (len(cols) + 5),
        ]
        for key, m in metrics["methods"].items():
            v = m.get(variant)
            if isinstance(v, str):
                lines.append(f"| {key} | _{v}_ |" + " |" * (len(cols) + 4))
                continue
            if not v:
                continue
            loc = v["localization"]
            lines.append(
                f"| {key} | "
                + " | ".join(bm.cell(v[x]) for x in MEASURES)
                + f" | {_pct(loc['clean'])} | {_pct(loc[variant])} | {_pct(loc['kept'])} | "
                f"{m['box_threshold']:.2f} | {v['ssim']['n']} |"
            )
        lines.append("")
    ref = metrics.get("reference")
    if ref and metrics.get("comparisons"):
        lines += [
            f"### Paired comparison with {ref} (adversarial variant)",
            "",
            f"_Per image: {ref}'s similarity minus the method's. Median difference [bootstrap 95% "
            f"interval], share of images where {ref}'s maps changed less, Wilcoxon signed-rank "
            "p-value._",
            "",
            "| Method | Δ Pearson r | Δ SSIM | Δ top IoU | "
            f"{ref} more similar (SSIM) | p (SSIM) | n |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for key, c in metrics["comparisons"].items():
            sp = c["ssim"]
            share = "-" if sp["a_greater"] is None else f"{100 * sp['a_greater']:.0f}%"
            p = "-" if sp["wilcoxon_p"] is None else f"{sp['wilcoxon_p']:.1g}"
            lines.append(
                f"| {key} | {_diff(c['pearson'])} | {_diff(sp)} | {_diff(c['top_iou'])} | "
                f"{share} | {p} | {sp['n']} |"
            )
        lines.append("")
    if metrics.get("failures"):
        lines += [f"_{len(metrics['failures'])} image(s) failed; see metrics.json `failures`._", ""]
    return "\n".join(lines)


def per_image_table(
    records: RunRecords, methods: Sequence[str], settings: AttackSettings
) -> tuple[list[str], list[list[Any]]]:
    """``per_image.csv``: its header and one row per image and method (the failed images are
    added by :func:`~eigencam.evaluation.benchmark.write_outputs`).

    Columns: the image and its classes before and after the attack, the perturbation norms,
    then for the clean map its box and IoU with the ground truth, and for each variant the four
    similarities, its box and IoU with the ground truth.
    """
    variants = settings.variants()
    header = ["file", "method", "label", "clean_class", "clean_prob", "adv_class", "adv_prob"]
    header += ["success", "iterations", "l2", "linf", "rho", "clean_box", "clean_loc_iou"]
    for v in variants:
        header += [f"{v}_{m}" for m in MEASURES] + [f"{v}_box", f"{v}_loc_iou"]
    header.append("error")
    rows = []
    for r in records.rows:
        a, clean_c, adv_c = r["attack"], r["clean"], r["adversarial"]
        base = [r.get("label"), clean_c["class"], clean_c["prob"], adv_c["class"], adv_c["prob"]]
        base += [a["success"], a["iterations"], a["l2"], a["linf"], a["rho"]]
        for key in methods:
            m = r["methods"].get(key) or {"error": "not recorded"}
            clean = m.get("clean") or {}
            cells = [r["key"], key, *base, clean.get("box"), clean.get("loc_iou")]
            for v in variants:
                d = m.get(v) or (m.get("adversarial") if v == "same_class" else None) or {}
                cells += [d.get(x) for x in MEASURES] + [d.get("box"), d.get("loc_iou")]
            rows.append([*cells, m.get("error")])
    return header, rows


def figure_name(key: str) -> str:
    """File name of an image's figure in ``figures/`` (from its dataset key)."""
    stem = key.rsplit(".", 1)[0] if "." in key.rsplit("/", 1)[-1] else key
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("_") + ".png"


def render_figure(job: Mapping[str, Any], out_dir: Path, tile: int = 224) -> Path:
    """Draw one image's Figure-4 layout into ``out_dir/figures/``."""
    row = job["row"]
    cells = []
    for key, (mc, ma) in job["maps"].items():
        r = row["methods"][key]
        if r.get("error"):
            cells.append(MethodCells(key, None, None))
            continue
        a = r["adversarial"]
        specific = job["class_specific"][key]
        cells.append(
            MethodCells(
                key,
                mc,
                ma,
                job["boxes"][key][0],
                job["boxes"][key][1],
                clean_caption=f"class: {row['clean']['name']}" if specific else "class-agnostic",
                adversarial_caption=f"SSIM {_fmt(a['ssim'])} · r {_fmt(a['pearson'])}",
            )
        )
    truth = f"true: {row['label_name']}" if row.get("label_name") else "true class unknown"
    att = row["attack"]
    rgb = adversarial_figure(
        job["clean"],
        job["adversarial"],
        job["gt"],
        cells,
        clean_caption=f"{row['clean']['name']} {row['clean']['prob']:.2f}",
        adversarial_caption=f"{row['adversarial']['name']} {row['adversarial']['prob']:.2f}",
        adversarial_tag=row["adversarial"]["name"],
        title=[
            f"{row['key']} · {truth}",
            f"DeepFool: {row['clean']['name']} -> {row['adversarial']['name']} "
            f"({'flipped' if att['success'] else 'not flipped'}, L2 {att['l2']:.3f}, "
            f"Linf {att['linf']:.4f}, {att['iterations']} steps)",
        ],
        tile=tile,
    )
    return write_png(out_dir / "figures" / figure_name(row["key"]), rgb)
