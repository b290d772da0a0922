"""What ``eigencam faithfulness`` measures, and the metrics and curves it reports."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from eigencam.errors import check, check_choice, check_range

BASELINE_KEYS = {"random": "random (baseline)", "center_gaussian": "centre Gaussian (baseline)"}
# (key, title, higher is better, shown as percent)
METRICS: tuple[tuple[str, str, bool, bool], ...] = (
    ("deletion_auc", "Deletion AUC ↓", False, False),
    ("insertion_auc", "Insertion AUC ↑", True, False),
    ("average_drop", "Average drop % ↓", False, True),
    ("increase", "Increase in confidence % ↑", True, True),
    ("road_morf", "ROAD MoRF ↓", False, False),
    ("road_lerf", "ROAD LeRF ↑", True, False),
    ("road_combined", "ROAD (LeRF − MoRF)/2 ↑", True, False),
)
CURVES = ("deletion", "insertion", "road_morf", "road_lerf")


@dataclass(frozen=True)
class FaithfulnessSettings:
    """What is measured.

    Attributes:
        steps: deletion / insertion steps (steps + 1 points from 0 to all pixels).
        baseline: what deleted pixels become and insertion starts from: ``blur`` (the image
            blurred with sigma ``blur_sigma``, default 5% of the side) or ``constant``.
        constant: the constant's pixel value in [0, 1] (0 = black).
        blur_sigma: blur sigma in pixels, or None for 5% of the longer side.
        road_fractions: fractions of pixels imputed by ROAD.
        road_noise: standard deviation of ROAD's imputation noise (pixel units).
        seed: seed of the ROAD noise and of the random baseline (mixed with each image's key).
        gaussian_sigma: sigma of the centre-Gaussian baseline, as a fraction of each side.
        batch_size: model inputs per forward pass inside the metrics.
    """

    steps: int = 20
    baseline: str = "blur"
    constant: float = 0.0
    blur_sigma: float | None = None
    road_fractions: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
    road_noise: float = 0.01
    seed: int = 0
    gaussian_sigma: float = 0.25
    batch_size: int = 64

    def __post_init__(self) -> None:
        check_range("steps", self.steps, 1)
        check_choice("baseline", self.baseline, ("blur", "constant"))
        check_range("constant", self.constant, 0.0, 1.0)
        check(
            self.blur_sigma is None or self.blur_sigma > 0,
            f"blur_sigma must be > 0, got {self.blur_sigma}",
        )
        fractions = self.road_fractions
        check(
            bool(fractions) and all(0 < f < 1 for f in fractions),
            f"road_fractions must be in (0, 1), got {fractions}",
        )
        check_range("road_noise", self.road_noise, 0)
        check(self.gaussian_sigma > 0, f"gaussian_sigma must be > 0, got {self.gaussian_sigma}")
        check_range("batch_size", self.batch_size, 1)


def curve_fractions(settings: FaithfulnessSettings) -> dict[str, list[float]]:
    """The x values of the recorded curves."""
    counts = torch.linspace(0, 1, settings.steps + 1)
    return {
        "deletion": counts.tolist(),
        "insertion": counts.tolist(),
        "road_morf": [float(f) for f in settings.road_fractions],
        "road_lerf": [float(f) for f in settings.road_fractions],
    }
