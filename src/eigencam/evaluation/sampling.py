"""Seeded, class-stratified subsets of a dataset, for benchmarks too costly to run on all of it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from eigencam.evaluation.datasets import Dataset


def stratified(dataset: Dataset, per_class: int, *, seed: int = 0) -> Dataset:
    """At most ``per_class`` images of each class, drawn at random with ``seed``.

    Images without a known class form one group of their own. The subset keeps the dataset's
    order (file names), so the same arguments always select, and process, the same images.

    Args:
        dataset: a dataset from :func:`~eigencam.evaluation.open_dataset`.
        per_class: images per class (>= 1).
        seed: the draw's seed.

    Returns:
        A :class:`Dataset` with the chosen samples (``skipped`` unchanged).
    """
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    groups: dict[int, list[int]] = {}
    for i, s in enumerate(dataset.samples):
        groups.setdefault(-1 if s.label is None else int(s.label), []).append(i)
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for label in sorted(groups):
        idx = groups[label]
        pick = rng.permutation(len(idx))[:per_class]
        chosen += [idx[j] for j in pick]
    return replace(dataset, samples=[dataset.samples[i] for i in sorted(chosen)])
