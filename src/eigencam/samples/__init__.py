"""Sample photos shipped with eigencam (licences in CREDITS.md), used by ``eigencam demo``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def sample_paths() -> list[Path]:
    """Paths of the bundled sample photos, sorted by name."""
    root = resources.files("eigencam.samples")
    return sorted(Path(str(p)) for p in root.iterdir() if p.name.endswith(".jpg"))
