"""What ``eigencam localize`` measures: the threshold grids and IoU rules, and the scoring of
one batch's maps at every threshold.

Torch-free on purpose: :func:`score_part` runs in the scorer processes (``score_workers``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eigencam.errors import check, check_choice
from eigencam.evaluation.metrics.protocols import CHOE_GRID, CHOE_IOUS, PAPER_THRESHOLDS, union_grid
from eigencam.evaluation.scoring import score_and_write


@dataclass(frozen=True)
class LocalizeSettings:
    """What is measured.

    Attributes:
        thresholds: the paper protocol's threshold sweep (fractions of the map's maximum).
        box_grid: Choe et al.'s threshold grid for MaxBoxAcc / MaxBoxAccV2.
        iou_threshold: IoU for a correct box in the paper protocol and MaxBoxAcc (0.5).
        v2_ious: MaxBoxAccV2's IoU thresholds (0.3, 0.5, 0.7).
        connectivity: 8 or 4 for connected components.
    """

    thresholds: tuple[float, ...] = PAPER_THRESHOLDS
    box_grid: tuple[float, ...] = CHOE_GRID
    iou_threshold: float = 0.5
    v2_ious: tuple[float, ...] = CHOE_IOUS
    connectivity: int = 8

    def __post_init__(self) -> None:
        check(bool(self.thresholds and self.box_grid), "thresholds and box_grid must not be empty")
        check(
            0.0 < self.iou_threshold <= 1.0,
            f"iou_threshold must be in (0, 1], got {self.iou_threshold}",
        )
        check(
            bool(self.v2_ious) and all(0.0 < v <= 1.0 for v in self.v2_ious),
            f"v2_ious must be IoU thresholds in (0, 1], got {self.v2_ious}",
        )
        check_choice("connectivity", self.connectivity, (8, 4))

    @property
    def grid(self) -> tuple[float, ...]:
        """Every threshold evaluated: the union of both grids."""
        return union_grid(self.thresholds, self.box_grid)


def settings_dict(settings: LocalizeSettings) -> dict[str, Any]:
    """The settings as JSON."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()}


def score_part(
    settings: LocalizeSettings,
    stack: list[np.ndarray],
    where: list[tuple[int, int, int]],
    info: dict[str, np.ndarray],
    skipped: list[tuple[str, str]],
    methods: Sequence[str],
) -> dict[str, np.ndarray]:
    """One part of the records: the boxes and IoUs of a batch's maps at every threshold.

    The arguments are those of :func:`eigencam.evaluation.scoring.score_and_write`, which
    writes the part to a file; it is read back here so that the run loop writes the parts.
    """
    with tempfile.TemporaryDirectory(prefix="eigencam-boxes-") as tmp:
        path = Path(tmp) / "part.npz"
        grid = np.asarray(settings.grid)
        score_and_write(
            stack, where, info, skipped, list(methods), grid, settings.connectivity, path
        )
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
