"""``eigencam faithfulness``'s aggregates, from the run's records alone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from eigencam.evaluation.faithfulness.settings import (
    BASELINE_KEYS,
    CURVES,
    METRICS,
    FaithfulnessSettings,
    curve_fractions,
)
from eigencam.evaluation.metrics.stats import describe
from eigencam.runs.folder import RunRecords


def summarize(
    records: RunRecords, methods: Sequence[str], settings: FaithfulnessSettings
) -> dict[str, Any]:
    """Per method: :func:`~eigencam.evaluation.metrics.stats.describe` of every metric and the mean
    curves, over the images where the method ran."""
    rows = records.rows
    out: dict[str, Any] = {}
    fractions = curve_fractions(settings)
    for key in methods:
        ok = [r["methods"][key] for r in rows if not (r["methods"].get(key) or {}).get("error")]
        entry: dict[str, Any] = {
            "title": BASELINE_KEYS.get(key, key),
            "baseline": key in BASELINE_KEYS,
            "images": len(ok),
            "failed_images": len(rows) - len(ok),
        }
        for metric, *_ in METRICS:
            entry[metric] = describe([np.nan if e[metric] is None else e[metric] for e in ok])
        entry["curves"] = {
            c: {
                "fractions": fractions[c],
                "mean": np.mean([e["curves"][c] for e in ok], axis=0).round(5).tolist()
                if ok
                else None,
            }
            for c in CURVES
        }
        out[key] = entry
    labelled = [r for r in rows if r.get("label") is not None]
    return {
        "images": len(rows),
        "classification": {
            "top1_acc": float(np.mean([r["predicted"] == r["label"] for r in labelled]))
            if labelled
            else None,
        },
        "methods": out,
        "failures": records.failures,
    }
