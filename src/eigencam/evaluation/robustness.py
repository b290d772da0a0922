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
(:mod:`eigencam.evaluation.similarity`, on the maps at the model's input resolution, where the
adversarial image lives), the IoU of the two localization boxes (the paper's protocol: the
largest connected component of the map thresholded at a stated fraction of its maximum,
:mod:`eigencam.postprocess.boxes`), and whether each box localizes the object (IoU >= 0.5 with
a ground-truth box). Aggregates (median and interquartile range over the images whose attack
succeeded, paired comparisons with a reference method) go to ``metrics.json`` and
``table.md``, every number to ``per_image.csv``, and one figure per image in the layout of
Figure 4 to ``figures/``. Runs are resumable (:mod:`eigencam.evaluation.runfiles`); an image
that cannot be read or attacked is a recorded failure, a method failing on an image leaves that
method's cells of the image empty.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from eigencam.attacks.deepfool import DeepFoolResult, deepfool, input_bounds
from eigencam.errors import InvalidParameterError, TargetError, UnsupportedModelError
from eigencam.evaluation.datasets import Dataset, Sample
from eigencam.evaluation.metrics.similarity import pearson, ssim, top_region_iou
from eigencam.evaluation.metrics.stats import describe, paired_difference, rate
from eigencam.evaluation.runfiles import (
    RunRecords,
    load_records,
    open_run,
    pending_batches,
    write_part,
)
from eigencam.io.images import DEFAULT_MAX_PIXELS
from eigencam.io.outputs import atomic_write, write_json
from eigencam.io.png import write_png
from eigencam.methods.base import Explainer
from eigencam.models.preprocessing import Preprocessing
from eigencam.postprocess import boxes as bx
from eigencam.runs.source import LoadedImage

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
_FATAL = (TargetError, UnsupportedModelError)


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
        if self.candidates < 2:
            raise InvalidParameterError(f"candidates must be >= 2, got {self.candidates}")
        if self.overshoot < 0:
            raise InvalidParameterError(f"overshoot must be >= 0, got {self.overshoot}")
        if self.max_iter < 1:
            raise InvalidParameterError(f"max_iter must be >= 1, got {self.max_iter}")
        for name, v in (("box_threshold", self.box_threshold), *self.method_thresholds.items()):
            if not 0.0 <= float(v) < 1.0:
                raise InvalidParameterError(f"threshold of {name} must be in [0, 1), got {v}")
        if not 0.0 < self.top_fraction <= 1.0:
            raise InvalidParameterError(f"top_fraction must be in (0, 1], got {self.top_fraction}")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise InvalidParameterError(
                f"iou_threshold must be in (0, 1], got {self.iou_threshold}"
            )
        bx.structure(self.connectivity)

    def threshold(self, method: str) -> float:
        """The box threshold of a method."""
        return float(self.method_thresholds.get(method, self.box_threshold))

    def variants(self) -> tuple[str, ...]:
        """The variants measured, in table order."""
        out = ["adversarial"]
        if self.same_class:
            out.append("same_class")
        if self.noise_control:
            out.append("noise")
        return tuple(out)


def settings_dict(settings: AttackSettings) -> dict[str, Any]:
    """The settings as JSON."""
    d = asdict(settings)
    d["method_thresholds"] = dict(settings.method_thresholds)
    return d


# -- per-batch work -------------------------------------------------------------------------
def _num(x: Any) -> float | None:
    v = float(x)
    return None if not np.isfinite(v) else v


def _error_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def _attack(
    model: nn.Module, x: Tensor, settings: AttackSettings, pre: Preprocessing
) -> tuple[DeepFoolResult | None, list[int], dict[int, str]]:
    """DeepFool on the batch; on an error, image by image. Returns (result of the images that
    were attacked, their indices, {index: error})."""
    bounds = input_bounds(pre.mean, pre.std, x.device)
    scale = torch.tensor(pre.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)

    def run(xs: Tensor) -> DeepFoolResult:
        return deepfool(
            model,
            xs,
            candidates=settings.candidates,
            overshoot=settings.overshoot,
            max_iter=settings.max_iter,
            bounds=bounds,
            pixel_scale=scale,
        )

    try:
        return run(x), list(range(x.shape[0])), {}
    except _FATAL:
        raise
    except Exception as err:
        if x.shape[0] == 1:
            return None, [], {0: _error_text(err)}
    parts, kept, errors = [], [], {}
    for i in range(x.shape[0]):
        try:
            parts.append(run(x[i : i + 1]))
            kept.append(i)
        except _FATAL:
            raise
        except Exception as err:  # recorded as this image's failure
            errors[i] = _error_text(err)
    if not parts:
        return None, [], errors
    merged = {
        f: torch.cat([getattr(p, f) for p in parts]) for f in DeepFoolResult.__dataclass_fields__
    }
    return DeepFoolResult(**merged), kept, errors


def _maps(expl: Explainer, x: Tensor, targets: Tensor | None) -> tuple[Tensor, dict[int, str]]:
    """(B, k, H, W) maps of a call, rows of images where the method failed filled with NaN."""
    try:
        res = expl(x) if targets is None else expl(x, targets=targets)
        return res.maps.detach().float(), {}
    except Exception as err:
        if x.shape[0] == 1:
            k = 1 if targets is None else targets.shape[1]
            return torch.full((1, k, *x.shape[-2:]), float("nan"), device=x.device), {
                0: _error_text(err)
            }
    rows, errors = [], {}
    for i in range(x.shape[0]):
        m, e = _maps(expl, x[i : i + 1], None if targets is None else targets[i : i + 1])
        rows.append(m)
        if e:
            errors[i] = e[0]
    return torch.cat(rows), errors


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
    from eigencam.evaluation.metrics.baselines import key_seed

    std = torch.tensor(pre.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    noise = torch.empty_like(x)
    for i, key in enumerate(keys):
        gen = torch.Generator().manual_seed(key_seed(str(key), seed))
        noise[i] = torch.randn(x.shape[1:], generator=gen).to(x.device, x.dtype)
    noise = noise / noise.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    noise = noise * l2.to(x.dtype).view(-1, 1, 1, 1) / std  # pixel units -> input units
    low, high = input_bounds(pre.mean, pre.std, x.device)
    return torch.maximum(torch.minimum(x + noise, high), low)


def _classify(model: nn.Module, x: Tensor) -> Tensor:
    from eigencam.capture.hooks import preserved_state
    from eigencam.methods.targets import logits_of

    with torch.inference_mode(), preserved_state(model):
        return logits_of(model(x)).float()


def _name(labels: Sequence[str] | None, c: int) -> str:
    return labels[c] if labels is not None and 0 <= c < len(labels) else str(c)


@dataclass
class _Batch:
    """What one batch produced: records, failures, figure inputs."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    figures: list[dict[str, Any]] = field(default_factory=list)


def attack_batch(
    items: Sequence[tuple[LoadedImage, Sample]],
    model: nn.Module,
    explainers: Mapping[str, Explainer],
    pre: Preprocessing,
    settings: AttackSettings,
    *,
    device: str | torch.device = "cpu",
    labels: Sequence[str] | None = None,
    keep_figures: bool = True,
) -> _Batch:
    """Attack a batch, explain both versions with every method, measure; one row per image."""
    out = _Batch()
    if not items:
        return out
    pixels = torch.from_numpy(np.stack([img.pixels for img, _ in items])).to(device)
    x = pre.normalize_batch(pixels)
    adv, kept, errors = _attack(model, x, settings, pre)
    for i, err in errors.items():
        img, s = items[i]
        out.failures.append({"key": s.key, "file": str(img.path), "error": f"attack: {err}"})
    if adv is None:
        return out
    items = [items[i] for i in kept]
    x = x[kept]
    keys = [s.key for _, s in items]
    clean_p = adv.clean_logits.softmax(1)
    adv_p = adv.adversarial_logits.softmax(1)
    clean_c, adv_c = adv.clean_label, adv.adversarial_label
    x_adv = adv.adversarial
    regions = np.array([pre.crop_region(*img.size) for img, _ in items], dtype=np.float64)
    gt = bx.clip_to_region(bx.pad_boxes([s.boxes for _, s in items]), regions)
    variants = settings.variants()
    x_noise = noise_c = noise_p = None
    if "noise" in variants:
        x_noise = _noise_images(x, adv.l2, keys, pre, settings.seed)
        noise_p = _classify(model, x_noise).softmax(1)
        noise_c = noise_p.argmax(1)
    h, w = x.shape[-2:]
    per_method: dict[str, dict[str, Any]] = {}
    for key, expl in explainers.items():
        specific = bool(getattr(expl, "class_specific", False))
        maps: dict[str, Tensor] = {}
        errs: dict[int, str] = {}
        m, e = _maps(expl, x, clean_c[:, None] if specific else None)
        maps["clean"] = m[:, 0]
        errs.update(e)
        if specific:
            targets = torch.stack([adv_c, clean_c], 1) if settings.same_class else adv_c[:, None]
            m, e = _maps(expl, x_adv, targets)
            maps["adversarial"] = m[:, 0]
            if settings.same_class:
                maps["same_class"] = m[:, 1]
        else:
            m, e = _maps(expl, x_adv, None)
            maps["adversarial"] = m[:, 0]
        errs.update(e)
        if x_noise is not None:
            m, e = _maps(expl, x_noise, noise_c[:, None] if specific else None)
            maps["noise"] = m[:, 0]
            errs.update(e)
        per_method[key] = _measure(maps, errs, regions, gt, settings, settings.threshold(key))
        per_method[key]["class_specific"] = specific
    for i, (img, s) in enumerate(items):
        row: dict[str, Any] = {
            "key": s.key,
            "file": str(img.path),
            "label": s.label,
            "label_name": None if s.label is None else _name(labels, s.label),
            "width": int(img.size[0]),
            "height": int(img.size[1]),
            "clean": {
                "class": int(clean_c[i]),
                "name": _name(labels, int(clean_c[i])),
                "prob": _num(clean_p[i, clean_c[i]]),
            },
            "adversarial": {
                "class": int(adv_c[i]),
                "name": _name(labels, int(adv_c[i])),
                "prob": _num(adv_p[i, adv_c[i]]),
                "prob_of_clean_class": _num(adv_p[i, clean_c[i]]),
            },
            "attack": {
                "success": bool(adv.success[i]),
                "iterations": int(adv.iterations[i]),
                "l2": _num(adv.l2[i]),
                "linf": _num(adv.linf[i]),
                "rho": _num(adv.rho[i]),
            },
            "methods": {k: v["rows"][i] for k, v in per_method.items()},
        }
        if noise_c is not None and noise_p is not None:
            row["noise"] = {
                "class": int(noise_c[i]),
                "name": _name(labels, int(noise_c[i])),
                "prob": _num(noise_p[i, noise_c[i]]),
            }
        out.rows.append(row)
        if keep_figures:
            out.figures.append(
                {
                    "row": row,
                    "clean": img.pixels,
                    "adversarial": _to_uint8(x_adv[i], pre),
                    "gt": _to_input(gt[i], regions[i], (h, w)),
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
            )
    return out


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
    n = clean.shape[0]
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
    for i in range(n):
        if i in errors:
            rows.append({"error": errors[i]})
            continue
        r: dict[str, Any] = {
            "error": None,
            "clean": {"box": _box(original["clean"][i]), "loc_iou": _num(loc["clean"][i])},
        }
        for name, vals in values.items():
            r[name] = {k: _num(v[i]) for k, v in vals.items()}
            r[name].update(box=_box(original[name][i]), loc_iou=_num(loc[name][i]))
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
    out[..., 0] = (out[..., 0] - x0) * sx
    out[..., 2] = (out[..., 2] - x0) * sx
    out[..., 1] = (out[..., 1] - y0) * sy
    out[..., 3] = (out[..., 3] - y0) * sy
    return out


def figure_name(key: str) -> str:
    """File name of an image's figure in ``figures/`` (from its dataset key)."""
    stem = key.rsplit(".", 1)[0] if "." in key.rsplit("/", 1)[-1] else key
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("_") + ".png"


def render_figure(job: Mapping[str, Any], out_dir: Path, tile: int = 224) -> Path:
    """Draw one image's Figure-4 layout into ``out_dir/figures/``."""
    from eigencam.viz.adversarial import MethodCells, adversarial_figure

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


def _fmt(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


# -- the run --------------------------------------------------------------------------------
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
    batch_size: int = 8,
    workers: int = 2,
    device: str | torch.device = "cpu",
    resume: bool = False,
    figures: bool = True,
    tile: int = 224,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    reference: str | None = "eigencam",
    progress: Callable[[int, int], None] | None = None,
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
        batch_size: images attacked and explained together.
        workers: image decoding threads.
        device: where the batches go (the model's device).
        resume: continue a killed run in ``out_dir``.
        figures: write ``figures/<image>.png``.
        tile: cell size of the figures.
        max_pixels: refuse larger images (decompression-bomb guard).
        reference: the method the others are compared with (paired differences); skipped when
            it is not among the explainers.
        progress: ``progress(done, failed)`` after each batch (this call's images).

    Returns:
        The ``metrics.json`` content.
    """
    if batch_size < 1:
        raise InvalidParameterError(f"batch_size must be >= 1, got {batch_size}")
    if not explainers:
        raise InvalidParameterError("attack needs at least one method")
    settings = settings or AttackSettings()
    out = Path(out_dir)
    info = dict(run_info or {})
    methods = list(explainers)
    identity = {
        "command": "attack",
        "dataset": {"root": str(Path(dataset.root).resolve()), "format": dataset.format},
        "methods": methods,
        "settings": settings_dict(settings),
        "preprocessing": preprocessing.describe(),
        "model": {k: info.get(k) for k in ("model", "weights")},
    }
    open_run(out, identity, resume=resume)
    done = load_records(out).keys() if resume else set()
    start = time.perf_counter()
    n_done = n_failed = 0
    for pairs, fails in pending_batches(
        dataset,
        preprocessing,
        done=done,
        batch_size=batch_size,
        workers=workers,
        max_pixels=max_pixels,
    ):
        good = []
        for img, s in pairs:
            if s.size is not None and tuple(s.size) != tuple(img.size):
                fails.append(
                    {
                        "key": s.key,
                        "file": str(img.path),
                        "error": f"the annotation is for a {s.size[0]} x {s.size[1]} image but "
                        f"the file is {img.size[0]} x {img.size[1]}",
                    }
                )
            else:
                good.append((img, s))
        batch = attack_batch(
            good,
            model,
            explainers,
            preprocessing,
            settings,
            device=device,
            labels=labels,
            keep_figures=figures,
        )
        fails += batch.failures
        for job in batch.figures:  # before the part: a resumed run never lacks a figure
            render_figure(job, out, tile)
        write_part(out, batch.rows, fails)
        n_done += len(batch.rows) + len(fails)
        n_failed += len(fails)
        if progress is not None:
            progress(n_done, n_failed)
    seconds = time.perf_counter() - start
    records = load_records(out).restrict({s.key for s in dataset.samples})
    class_specific = {k: bool(getattr(e, "class_specific", False)) for k, e in explainers.items()}
    metrics: dict[str, Any] = {
        **info,
        "command": info.get("command", "attack"),
        "settings": settings_dict(settings),
        "preprocessing": preprocessing.describe(),
        "dataset": {
            "root": str(dataset.root),
            "format": dataset.format,
            "images": len(dataset.samples),
            "skipped_annotations": [list(s) for s in dataset.skipped],
        },
        "timing": {
            "seconds_this_call": round(seconds, 2),
            "images_this_call": n_done,
            "seconds_per_image": round(seconds / n_done, 3) if n_done else None,
            "resumed_images": sum(s.key in done for s in dataset.samples),
        },
    }
    metrics.update(summarize(records, class_specific, settings, reference=reference))
    write_json(out / "metrics.json", metrics)
    text = table_markdown(metrics)
    atomic_write(out / "table.md", lambda fh: fh.write(text), mode="w")
    write_per_image_csv(out / "per_image.csv", records, methods, settings)
    return metrics


# -- aggregates -----------------------------------------------------------------------------
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


# -- outputs --------------------------------------------------------------------------------
def _cell(d: Mapping[str, Any] | None, digits: int = 2) -> str:
    if not d or d.get("median") is None:
        return "-"
    return f"{d['median']:.{digits}f} [{d['q25']:.{digits}f}, {d['q75']:.{digits}f}]"


def _pct(r: Mapping[str, Any] | None) -> str:
    if not r or r.get("rate") is None:
        return "-"
    return f"{100 * r['rate']:.0f}% ({r['count']}/{r['n']})"


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
        f"| {a['images']} | {_pct(a['success'])} | {_cell(a['l2'], 3)} | {_cell(a['linf'], 4)} "
        f"| {_cell(a['rho'], 4)} | {_cell(a['iterations'], 0)} | "
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
                + " | ".join(_cell(v[x]) for x in MEASURES)
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

            def diff(d: Mapping[str, Any]) -> str:
                if d["median_difference"] is None:
                    return "-"
                lo, hi = d["ci95"]
                return f"{d['median_difference']:+.2f} [{lo:+.2f}, {hi:+.2f}]"

            sp = c["ssim"]
            share = "-" if sp["a_greater"] is None else f"{100 * sp['a_greater']:.0f}%"
            p = "-" if sp["wilcoxon_p"] is None else f"{sp['wilcoxon_p']:.1g}"
            lines.append(
                f"| {key} | {diff(c['pearson'])} | {diff(sp)} | {diff(c['top_iou'])} | "
                f"{share} | {p} | {sp['n']} |"
            )
        lines.append("")
    if metrics.get("failures"):
        lines += [f"_{len(metrics['failures'])} image(s) failed; see metrics.json `failures`._", ""]
    return "\n".join(lines)


def variants_of(settings: Mapping[str, Any]) -> tuple[str, ...]:
    """The variants of a run from its settings dict."""
    out = ["adversarial"]
    if settings.get("same_class"):
        out.append("same_class")
    if settings.get("noise_control"):
        out.append("noise")
    return tuple(out)


def write_per_image_csv(
    path: str | Path, records: RunRecords, methods: Sequence[str], settings: AttackSettings
) -> Path:
    """One row per image and method (and one per failed image, with its error).

    Columns: the image and its classes before and after the attack, the perturbation norms,
    then for the clean map its box and IoU with the ground truth, and for each variant the four
    similarities, its box and IoU with the ground truth.
    """
    variants = settings.variants()
    header = [
        "file",
        "method",
        "label",
        "clean_class",
        "clean_prob",
        "adv_class",
        "adv_prob",
        "success",
        "iterations",
        "l2",
        "linf",
        "rho",
        "clean_box",
        "clean_loc_iou",
    ]
    for v in variants:
        header += [f"{v}_{m}" for m in MEASURES] + [f"{v}_box", f"{v}_loc_iou"]
    header.append("error")

    def f(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, bool):
            return str(int(v))
        if isinstance(v, float):
            return f"{v:.5g}"
        if isinstance(v, list):
            return " ".join(f"{x:.1f}" for x in v)
        return str(v)

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in records.rows:
        a = r["attack"]
        base = [
            r["key"],
            None,
            r.get("label"),
            r["clean"]["class"],
            r["clean"]["prob"],
            r["adversarial"]["class"],
            r["adversarial"]["prob"],
            a["success"],
            a["iterations"],
            a["l2"],
            a["linf"],
            a["rho"],
        ]
        for key in methods:
            m = r["methods"].get(key) or {"error": "not recorded"}
            cells = list(base)
            cells[1] = key
            clean = m.get("clean") or {}
            cells += [clean.get("box"), clean.get("loc_iou")]
            for v in variants:
                d = m.get(v) or (m.get("adversarial") if v == "same_class" else None) or {}
                cells += [d.get(x) for x in MEASURES] + [d.get("box"), d.get("loc_iou")]
            cells.append(m.get("error"))
            w.writerow([f(c) for c in cells])
    for fail in records.failures:
        w.writerow([fail["key"]] + [""] * (len(header) - 2) + [fail["error"]])
    text = buf.getvalue()
    return atomic_write(path, lambda fh: fh.write(text), mode="w")
