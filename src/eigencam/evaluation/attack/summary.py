"""``eigencam attack``'s aggregates, from the run's records alone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from eigencam.evaluation.attack.settings import MEASURES, AttackSettings
from eigencam.evaluation.metrics.stats import describe, paired_difference, rate
from eigencam.runs.folder import RunRecords


def _method(row: Mapping[str, Any], method: str) -> Mapping[str, Any]:
    return row["methods"].get(method) or {}


def _values(rows: Sequence[Mapping[str, Any]], method: str, variant: str, measure: str) -> list:
    """One value per row, NaN where it is missing or the method failed."""
    vals = [(_method(r, method).get(variant) or {}).get(measure) for r in rows]
    bad = [bool(_method(r, method).get("error")) for r in rows]
    return [np.nan if v is None or e else v for v, e in zip(vals, bad)]


def _ok(rows: Sequence[Mapping[str, Any]], method: str, variant: str) -> list[Mapping[str, Any]]:
    """Rows where the method ran and has the variant."""
    return [
        r for r in rows if variant in _method(r, method) and not _method(r, method).get("error")
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
        **{k: describe([r["attack"][k] for r in success]) for k in ("l2", "linf", "rho")},
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
            "failed_images": sum(bool(_method(r, key).get("error")) for r in rows),
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
        ref_keys = {r["key"] for r in _ok(success, reference, "adversarial")}
        for key in [k for k in methods if k != reference]:
            both = [r for r in _ok(success, key, "adversarial") if r["key"] in ref_keys]
            comparisons[key] = {
                m: paired_difference(
                    *(_values(both, k, "adversarial", m) for k in (reference, key))
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
