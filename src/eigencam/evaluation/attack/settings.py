"""What ``eigencam attack`` attacks and measures."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from eigencam.errors import check, check_range
from eigencam.postprocess import boxes as bx

VARIANTS = ("adversarial", "same_class", "noise")
MEASURES = ("pearson", "ssim", "top_iou", "box_iou")
MEASURE_TITLES = {
    "pearson": "Pearson r",
    "ssim": "SSIM",
    "top_iou": "top-{pct}% IoU",
    "box_iou": "box IoU",
}


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
    flags = {"same_class": "same_class", "noise": "noise_control"}
    return tuple(v for v in VARIANTS if v == "adversarial" or settings.get(flags[v]))
