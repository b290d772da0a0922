"""Summary statistics of per-image measures: median and spread, paired comparisons.

Numpy, with scipy for the bootstrap and the signed-rank test. NaN values (a measure undefined
for an image, such as the correlation with a constant map) are left out and counted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from eigencam.errors import check


def _finite(values: Sequence[float] | np.ndarray) -> tuple[np.ndarray, int]:
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    ok = np.isfinite(v)
    return v[ok], int((~ok).sum())


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


_DESCRIBED = ("median", "q25", "q75", "iqr", "mean")


def describe(values: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """Median, quartiles, interquartile range and mean of the finite values.

    Returns:
        ``{"n", "undefined", "median", "q25", "q75", "iqr", "mean"}``; the statistics are None
        when no value is finite. ``undefined`` counts the NaN values left out.
    """
    v, missing = _finite(values)
    if v.size == 0:
        return {"n": 0, "undefined": missing, **dict.fromkeys(_DESCRIBED)}
    q25, med, q75 = np.percentile(v, [25, 50, 75])
    return {
        "n": int(v.size),
        "undefined": missing,
        "median": _num(med),
        "q25": _num(q25),
        "q75": _num(q75),
        "iqr": _num(q75 - q25),
        "mean": _num(v.mean()),
    }


def rate(flags: Sequence[bool] | np.ndarray) -> dict[str, Any]:
    """Share of true values: ``{"n", "count", "rate"}`` (rate None when n is 0)."""
    f = np.asarray(flags, dtype=bool).reshape(-1)
    return {
        "n": int(f.size),
        "count": int(f.sum()),
        "rate": float(f.mean()) if f.size else None,
    }


def paired_difference(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Compare two measures on the same images: ``d = a - b`` per image.

    Args:
        a, b: (N,) values of two methods on the same N images (NaN pairs are left out).
        n_boot: bootstrap resamples for the confidence interval of the median difference
            (:func:`scipy.stats.bootstrap`, percentile method).
        seed: bootstrap seed.

    Returns:
        ``{"n", "median_difference", "ci95": [low, high] (percentile bootstrap of the median),
        "a_greater": share of images with a > b, "wilcoxon_p": two-sided Wilcoxon signed-rank
        p-value (None when every difference is 0 or fewer than 2 pairs)}``.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    check(
        a.shape == b.shape,
        f"a and b must have one value per image each, got {a.size} and {b.size}",
    )
    ok = np.isfinite(a) & np.isfinite(b)
    d = a[ok] - b[ok]
    out: dict[str, Any] = {"n": int(d.size)}
    out.update(dict.fromkeys(("median_difference", "ci95", "a_greater", "wilcoxon_p")))
    if d.size == 0:
        return out
    from scipy import stats

    low = high = float(d[0])  # one pair: nothing to resample
    if d.size > 1:
        ci = stats.bootstrap(
            (d,),
            np.median,
            n_resamples=n_boot,
            method="percentile",
            random_state=np.random.default_rng(seed),
        ).confidence_interval
        low, high = ci.low, ci.high
    out.update(
        median_difference=_num(np.median(d)),
        ci95=[_num(low), _num(high)],
        a_greater=float((d > 0).mean()),
    )
    if d.size >= 2 and np.any(d != 0):
        out["wilcoxon_p"] = _num(float(stats.wilcoxon(d).pvalue))
    return out
