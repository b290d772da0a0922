"""Class-specific methods on real ILSVRC validation images with the embedded weights (slow)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import dev_data_or_skip
from eigencam.io import load_image
from eigencam.methods import get_method
from eigencam.postprocess.placement import maps_at_original

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def one_per_class():
    root = dev_data_or_skip()
    records = json.loads((root / "annotations.json").read_text())["images"]
    chosen, seen = [], set()
    for rec in records:
        if rec["class_id"] not in seen:
            seen.add(rec["class_id"])
            chosen.append(rec)
    images = [load_image(root / "images" / r["file"]) for r in chosen]
    return chosen, images


# Measured on these 20 images (one per class, predicted class): eigencam 18, cam 18,
# gradcam 18, cnnfixations 16, cmwp 15 peaks inside a box; the thresholds leave a margin.
@pytest.mark.parametrize(
    "name,minimum", [("cam", 16), ("gradcam", 16), ("cnnfixations", 13), ("cmwp", 13)]
)
def test_map_peak_falls_inside_a_ground_truth_box(embedded, one_per_class, name, minimum):
    records, images = one_per_class
    explainer = get_method(name)(embedded.model)
    hits = 0
    for start in range(0, len(records), 10):
        x = embedded.preprocessing.batch(images[start : start + 10])
        result = explainer(x)
        relu = bool(result.params.get("relu"))
        for rec, raw, image in zip(records[start : start + 10], result.raw, images[start:]):
            heat = maps_at_original(raw, embedded.preprocessing, image.size, relu=relu)[0]
            y, x_ = np.unravel_index(int(np.argmax(heat)), heat.shape)
            hits += any(x0 <= x_ <= x1 and y0 <= y <= y1 for x0, y0, x1, y1 in rec["boxes"])
    assert len(records) == 20
    assert hits >= minimum, f"{name}: peak inside a box for {hits}/20 images"
