"""A synthetic localization dataset whose every answer is known, and toy explainers for it.

Images are 32 x 32 PNGs (lossless). The red channel of the bottom-right pixel sets the
prediction of :class:`CornerClassifier`; the green channel is the map of the class-agnostic
:class:`GreenMap`; the blue channel holds one plane per class for the class-specific
:class:`BluePlaneMap` (class c where blue = (c + 1) / 4).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from eigencam.methods.base import CAMResult, Explainer, check_inputs
from eigencam.models.preprocessing import Preprocessing
from eigencam.postprocess.maps import normalize

SIZE = 32
GT = (4, 4, 20, 20)  # x0, y0, x1, y1 of the object
WRONG = (22, 22, 30, 30)  # disjoint from GT
STRIP = (0, 22, 32, 32)  # larger than GT, disjoint from it
PRE = Preprocessing((SIZE, SIZE), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))

# (label, predicted class, green regions, {class: blue region})
IMAGES = [
    (0, 0, [GT], {0: GT}),  # everything right
    (1, 1, [WRONG], {1: GT}),  # agnostic map wrong
    (2, 0, [GT], {2: GT, 0: WRONG}),  # misclassified: GT map right, top-1 map wrong
    (0, 1, [GT], {0: WRONG, 1: GT}),  # misclassified: GT map wrong, top-1 map right
    (1, 1, [STRIP, GT], {1: GT}),  # agnostic: largest component wrong, another one right
    (2, 2, [], {2: GT}),  # agnostic map all zero: no box
]

# Expected results (IoU 0.5; every threshold below 1 gives the same masks).
EXPECTED = {
    "classification": {"top1_acc": 4 / 6, "top5_acc": 1.0},
    "green": {
        "gt_known": 3 / 6,
        "top1_loc": 1 / 6,
        "top5_loc": 3 / 6,
        "class_independent": 3 / 6,
        "maxboxacc": 3 / 6,
        "maxboxacc_v2": 4 / 6,
        "correct": (1 / 4, 1 / 4),
        "wrong": (1.0, 1.0),
    },
    "plane": {
        "gt_known": 5 / 6,
        "top1_loc": 4 / 6,
        "top5_loc": 5 / 6,
        "class_independent": 5 / 6,
        "maxboxacc": 5 / 6,
        "maxboxacc_v2": 5 / 6,
        "correct": (1.0, 1.0),
        "wrong": (1 / 2, 1 / 2),
    },
}


def make_dataset(root: Path) -> Path:
    """Write the images and an ``annotations.json`` (dev format) under ``root``."""
    entries = []
    for i, (label, pred, green, planes) in enumerate(IMAGES):
        rgb = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
        for x0, y0, x1, y1 in green:
            rgb[y0:y1, x0:x1, 1] = 255
        for c, (x0, y0, x1, y1) in planes.items():
            rgb[y0:y1, x0:x1, 2] = 64 * (c + 1)
        rgb[-1, -1, 0] = 64 * pred
        name = f"img{i}.png"
        (root / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(root / "images" / name)
        entries.append(
            {"file": name, "width": SIZE, "height": SIZE, "boxes": [list(GT)], "class_id": label}
        )
    (root / "annotations.json").write_text(json.dumps({"info": {}, "images": entries}))
    return root


class CornerClassifier(nn.Module):
    """Three classes read from the red value of the bottom-right pixel (0, 1/4, 1/2)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(100.0))

    def forward(self, x: Tensor) -> Tensor:
        red = x[:, 0, -1, -1]
        levels = torch.tensor([0.0, 0.25, 0.5], device=x.device)
        return -self.scale * (red[:, None] - levels) ** 2


class GreenMap(Explainer):
    """Class-agnostic toy method: the green channel."""

    name = "green"
    class_specific = False

    def __init__(self, model: nn.Module, target_layer="auto", **kw) -> None:
        super().__init__(model, target_layer)
        self.calls = 0
        self.images = 0

    def __call__(self, inputs: Tensor, targets=None) -> CAMResult:
        if targets is not None:
            raise TypeError("green is class-agnostic")
        x = check_inputs(inputs, self.model)
        self.calls += 1
        self.images += x.shape[0]
        raw = x[:, 1:2]
        return CAMResult(normalize(raw), raw, "input", self.name, output=self.model(x).detach())


class BluePlaneMap(Explainer):
    """Class-specific toy method: where blue = (class + 1) / 4."""

    name = "plane"
    class_specific = True

    def __init__(self, model: nn.Module, target_layer="auto", **kw) -> None:
        super().__init__(model, target_layer)
        self.images = 0

    def __call__(self, inputs: Tensor, targets=None) -> CAMResult:
        x = check_inputs(inputs, self.model)
        out = self.model(x).detach()
        if targets is None:
            targets = out.argmax(1)
        t = torch.as_tensor(targets, device=x.device).long().reshape(-1)
        self.images += x.shape[0]
        level = (t.float() + 1) * 64 / 255
        raw = ((x[:, 2] - level[:, None, None]).abs() < 0.1).float()[:, None]
        return CAMResult(normalize(raw), raw, "input", self.name, output=out, targets=t)


def explainers(model: nn.Module | None = None) -> dict[str, Explainer]:
    model = model or CornerClassifier()
    return {"green": GreenMap(model), "plane": BluePlaneMap(model)}
