"""Semantics on real ILSVRC validation images with the embedded weights (skip without data)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import dev_data_or_skip
from eigencam import EigenCAM
from eigencam.io import load_image
from eigencam.postprocess.placement import maps_at_original

pytestmark = pytest.mark.slow


def _subset(per_class: int):
    root = dev_data_or_skip()
    records = json.loads((root / "annotations.json").read_text())["images"]
    chosen, counts = [], {}
    for rec in records:
        if counts.get(rec["class_id"], 0) < per_class:
            counts[rec["class_id"]] = counts.get(rec["class_id"], 0) + 1
            chosen.append(rec)
    return root, chosen


@pytest.mark.parametrize("center", [False, True])
def test_map_peak_falls_inside_a_ground_truth_box(embedded, center):
    """Eigen-CAM never sees the class, yet its peak lands on the object for most images."""
    root, records = _subset(per_class=10)
    explainer = EigenCAM(embedded.model, center=center)
    hits = 0
    for start in range(0, len(records), 25):
        chunk = records[start : start + 25]
        images = [load_image(root / "images" / r["file"]) for r in chunk]
        result = explainer(embedded.preprocessing.batch(images))
        for rec, raw, image in zip(chunk, result.raw, images):
            heat = maps_at_original(raw, embedded.preprocessing, image.size)[0]
            y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
            hits += any(x0 <= x <= x1 and y0 <= y <= y1 for x0, y0, x1, y1 in rec["boxes"])
    rate = hits / len(records)
    assert len(records) == 200
    assert rate >= 0.75, f"peak inside a box for only {rate:.0%} of images"


def test_signs_agree_between_solvers_on_real_activations(embedded):
    """Real activations (small spectral gaps included): every solver within 0.9999 of SVD."""
    root, records = _subset(per_class=2)
    images = [load_image(root / "images" / r["file"]) for r in records]
    x = embedded.preprocessing.batch(images)
    ref = EigenCAM(embedded.model, solver="svd", n_components=3)(x).raw.flatten(2)
    for solver in ("eigh", "squaring", "subspace"):
        got = EigenCAM(embedded.model, solver=solver, n_components=3)(x).raw.flatten(2)
        a = got - got.mean(-1, keepdim=True)
        b = ref - ref.mean(-1, keepdim=True)
        corr = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))
        assert float(corr.min()) >= 0.9999, (solver, corr.min())
    assert torch.isfinite(ref).all()
