"""``eigencam attack`` on the run loop: attack a batch, explain both versions, measure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from eigencam.attacks.deepfool import DeepFoolResult, deepfool, input_bounds
from eigencam.errors import TargetError
from eigencam.evaluation import benchmark as bm
from eigencam.evaluation.attack.report import per_image_table, render_figure, table_markdown
from eigencam.evaluation.attack.settings import AttackSettings
from eigencam.evaluation.attack.summary import summarize
from eigencam.evaluation.metrics.baselines import key_seed
from eigencam.evaluation.metrics.similarity import pearson, ssim, top_region_iou
from eigencam.methods.base import Explainer
from eigencam.models.preprocessing import Preprocessing
from eigencam.postprocess import boxes as bx
from eigencam.runs.folder import RunRecords
from eigencam.runs.source import Batch
from eigencam.runs.step import RUN_ERRORS, isolate, to_batch

# Errors that say the model cannot be attacked at all: they stop the run instead of being
# recorded for every image.
_ATTACK_RUN_ERRORS = (*RUN_ERRORS, TargetError)


@dataclass
class AttackTask(bm.Benchmark):
    """``eigencam attack``: one json part of rows and failures per batch, figures written before
    their part.

    Attributes:
        figures: write ``figures/<image>.png`` (the layout of the paper's Figure 4).
        tile: cell size of the figures.
        reference: the method the others are compared with (paired differences); skipped when
            it is not among the explainers.
    """

    command = "attack"
    settings_class = AttackSettings
    figures: bool = True
    tile: int = 224
    reference: str | None = "eigencam"

    def measure(self, batch: Batch) -> list[dict[str, Any]]:
        """Attack the images, explain both versions with every method, measure, draw the
        figures; one row per image (the images that cannot be attacked fail in ``batch``)."""
        items = self.sized(batch)
        if not items:
            return []
        model, pre, settings, labels = self.model, self.pre, self.settings, self.labels
        x = to_batch([img.pixels for img, _ in items], pre, self.options.device)
        adv, kept, errors = _attack(model, x, settings, pre)
        for i, err in errors.items():
            batch.fail(items[i][1], f"attack: {err}")
        if adv is None:
            return []
        items = [items[i] for i in kept]
        x, x_adv = x[kept], adv.adversarial
        keys = [s.key for _, s in items]
        clean_p, adv_p = adv.clean_logits.softmax(1), adv.adversarial_logits.softmax(1)
        clean_c, adv_c = adv.clean_label, adv.adversarial_label
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
            self.advance(len(items) / len(self.explainers))
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
                    **{k: bm.num(getattr(adv, k)[i]) for k in ("l2", "linf", "rho")},
                },
                "methods": {k: v["rows"][i] for k, v in per_method.items()},
            }
            if noise_c is not None and noise_p is not None:
                row["noise"] = _prediction(labels, int(noise_c[i]), noise_p[i])
            rows.append(row)
            if self.figures:  # before the part: a resumed run never lacks a figure
                methods = {
                    k: (_pair(v["maps"], i), _pair(v["local"], i), self.class_specific(k))
                    for k, v in per_method.items()
                }
                gt_input = _to_input(gt[i], regions[i], tuple(x.shape[-2:]))
                adv_rgb = _to_uint8(x_adv[i], pre)
                render_figure(row, img.pixels, adv_rgb, gt_input, methods, self.out, self.tile)
        return rows

    def class_specific(self, key: str) -> bool:
        return bool(getattr(self.explainers[key], "class_specific", False))

    def summarize(self, records: RunRecords) -> dict[str, Any]:
        specific = {k: self.class_specific(k) for k in self.explainers}
        return summarize(records, specific, self.settings, reference=self.reference)

    def write(self, metrics: Mapping[str, Any], records: RunRecords) -> None:
        header, rows = per_image_table(records, list(self.explainers), self.settings)
        bm.write_outputs(self.out, table_markdown(metrics), header, rows, records.failures)


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
    values = {
        name: {
            "pearson": pearson(clean, m).cpu().numpy(),
            "ssim": ssim(clean, m).cpu().numpy(),
            "top_iou": top_region_iou(clean, m, settings.top_fraction).cpu().numpy(),
            "box_iou": bx.box_iou(original["clean"], original[name]),
        }
        for name, m in maps.items()
        if name != "clean"
    }
    rows: list[dict[str, Any]] = []
    for i in range(clean.shape[0]):
        r: dict[str, Any] = {"error": errors.get(i)}
        for name in [] if i in errors else maps:
            r[name] = {k: bm.num(v[i]) for k, v in values.get(name, {}).items()}
            r[name].update(box=_box(original[name][i]), loc_iou=bm.num(loc[name][i]))
        rows.append(r)
    return {"rows": rows, "maps": {k: v.cpu().numpy() for k, v in maps.items()}, "local": local}


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


def _pair(per_variant: Mapping[str, Any], i: int) -> tuple[Any, Any]:
    """Image ``i``'s clean and adversarial entries."""
    return per_variant["clean"][i], per_variant["adversarial"][i]


#: ``run_attack(dataset, model, preprocessing, explainers, out_dir, *, settings, run_info,
#: labels, run, figures, tile, reference)``: see :class:`AttackTask` and
#: :meth:`~eigencam.evaluation.benchmark.Benchmark.run`.
run_attack = AttackTask.run
