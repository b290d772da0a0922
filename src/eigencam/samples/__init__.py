"""Sample photos shipped with eigencam (licences in CREDITS.md), used by ``eigencam demo``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from eigencam.errors import InvalidParameterError


def sample_paths() -> list[Path]:
    """Paths of the bundled sample photos, sorted by name."""
    root = resources.files("eigencam.samples")
    return sorted(Path(str(p)) for p in root.iterdir() if p.name.endswith(".jpg"))


def names() -> list[str]:
    """Names of the bundled sample photos (``cat``, ``coffee``...)."""
    return [p.stem for p in sample_paths()]


def path(name: str) -> Path:
    """The path of a bundled sample photo by name: ``eigencam.samples.path("cat")``."""
    for p in sample_paths():
        if p.stem == name:
            return p
    raise InvalidParameterError(f"no sample photo {name!r}; the samples are {', '.join(names())}")
