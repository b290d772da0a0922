"""The options every run shares (what each command's long keyword list used to repeat)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eigencam.errors import check_range
from eigencam.io.images import DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class RunOptions:
    """How a run goes; nothing here changes what a run computes, so none of it is part of the
    run's identity.

    Attributes:
        batch_size: images per forward pass.
        workers: threads that decode images (and write outputs).
        device: where the input batches go (the model's device).
        resume: continue the run already in the folder, skipping what it recorded.
        overwrite: discard a run already in the folder and start again.
        max_pixels: refuse larger images (decompression-bomb guard).
        progress: called as ``progress(stats)`` with a :class:`~eigencam.runs.loop.RunStats`
            after each part; None for silence.
    """

    batch_size: int = 8
    workers: int = 2
    device: Any = "cpu"
    resume: bool = False
    overwrite: bool = False
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    progress: Callable[[Any], None] | None = None

    def __post_init__(self) -> None:
        check_range("batch_size", self.batch_size, 1)
        check_range("workers", self.workers, 0)
        if self.max_pixels is not None:
            check_range("max_pixels", self.max_pixels, 1)
