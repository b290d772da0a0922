"""What every dataset reader shares: :class:`Sample`, :class:`Dataset`, box and size checks,
class maps, and the collector that raises or records malformed entries (``skip_bad``)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from eigencam.errors import AnnotationError, check, check_range


@dataclass(frozen=True)
class Sample:
    """One image to localize.

    Attributes:
        key: stable identifier (path relative to the dataset root, ``/``-separated).
        path: the image file.
        boxes: (G, 4) float64 ground-truth boxes ``[x0, y0, x1, y1]`` in original image pixels.
        label: the model's class index of the object, or None when unknown.
        size: (width, height) the annotation was made for, checked against the image; or None.
        source: the annotation file (named in error messages).
        class_name: the dataset's class name of the object, if any.
    """

    key: str
    path: Path
    boxes: np.ndarray = field(repr=False)
    label: int | None
    size: tuple[int, int] | None
    source: str
    class_name: str | None = None


@dataclass
class Dataset:
    """Samples plus what was skipped while reading them.

    Attributes:
        root: the dataset folder (or annotation file) given.
        format: the format read.
        samples: the images to evaluate, sorted by file name (then key).
        skipped: (annotation source, reason) for each entry left out with ``skip_bad``.
    """

    root: Path
    format: str
    samples: list[Sample]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    def part(self, index: int, count: int) -> Dataset:
        """Part ``index`` (1-based) of ``count`` interleaved parts: samples i with i % count ==
        index - 1 in file-name order (a deterministic split that keeps class proportions when
        names are not ordered by class, as ILSVRC's are not)."""
        check(1 <= index <= count, f"part must be I/N with 1 <= I <= N, got {index}/{count}")
        return replace(self, samples=self.samples[index - 1 :: count])

    def head(self, limit: int | None) -> Dataset:
        """The first ``limit`` samples (all when None)."""
        if limit is None:
            return self
        check_range("limit", limit, 1)
        return replace(self, samples=self.samples[:limit])


def stratified(dataset: Dataset, per_class: int, *, seed: int = 0) -> Dataset:
    """At most ``per_class`` images of each class, drawn at random with ``seed``.

    Images without a known class form one group of their own. The subset keeps the dataset's
    order (file names), so the same arguments always select, and process, the same images; for
    benchmarks too costly to run on a whole dataset.

    Returns:
        A :class:`Dataset` with the chosen samples (``skipped`` unchanged).
    """
    check_range("per_class", per_class, 1)
    groups: dict[int, list[int]] = {}
    for i, s in enumerate(dataset.samples):
        groups.setdefault(-1 if s.label is None else int(s.label), []).append(i)
    rng = np.random.default_rng(seed)
    chosen = [
        groups[c][j] for c in sorted(groups) for j in rng.permutation(len(groups[c]))[:per_class]
    ]
    return replace(dataset, samples=[dataset.samples[i] for i in sorted(chosen)])


@dataclass(frozen=True)
class Reader:
    """One dataset format as :func:`~eigencam.evaluation.datasets.open_dataset` sees it.

    Attributes:
        read: ``read(path, *, skip_bad, **options) -> Dataset``.
        detect: whether a folder holds this format (for ``format="auto"``).
        options: {reader keyword: open_dataset keyword} of the options it takes.
        path_option: the open_dataset keyword that, when given, is read instead of the path.
    """

    read: Callable[..., Dataset]
    detect: Callable[[Path], bool]
    options: Mapping[str, str] = field(default_factory=dict)
    path_option: str | None = None


class Collector:
    """Raises or records annotation errors (``skip_bad``), and finishes the dataset."""

    def __init__(self, skip_bad: bool) -> None:
        self.skip_bad = skip_bad
        self.skipped: list[tuple[str, str]] = []

    def bad(self, source: object, cause: str) -> None:
        if not self.skip_bad:
            raise AnnotationError(
                source, cause + " (fix the annotation, or pass --skip-bad to leave it out)"
            )
        self.skipped.append((str(source), cause))

    @contextmanager
    def entry(self, source: object) -> Iterator[None]:
        """Attribute an :class:`AnnotationError` raised inside to ``source``: raise it, or record
        it and carry on with the next entry."""
        try:
            yield
        except AnnotationError as err:
            self.bad(source, err.cause if err.path == str(source) else str(err))

    def dataset(self, root: Path, fmt: str, samples: list[Sample]) -> Dataset:
        """The samples in file-name order (the same whether images sit in class folders or
        not); an image annotated twice is an error."""
        seen: dict[str, Sample] = {}
        for s in samples:
            if s.key in seen:
                self.bad(s.source, f"image {s.key} is annotated twice")
            else:
                seen[s.key] = s
        ordered = sorted(seen.values(), key=lambda s: (s.key.rsplit("/", 1)[-1], s.key))
        return Dataset(root=root, format=fmt, samples=ordered, skipped=self.skipped)


# -- entries ----------------------------------------------------------------------------------
def check_box(box: Any, size: tuple[int, int] | None, where: str) -> np.ndarray:
    """Validate one ``[x0, y0, x1, y1]`` box; clip it to the image when the size is known.

    Raises:
        AnnotationError: ``where`` (the entry) and what is wrong with the box.
    """
    try:
        values = [float(v) for v in box]
    except (TypeError, ValueError):
        raise AnnotationError(
            where, f"box must be 4 numbers [x0, y0, x1, y1], got {box!r}"
        ) from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise AnnotationError(where, f"box must be 4 finite numbers [x0, y0, x1, y1], got {box!r}")
    x0, y0, x1, y1 = values
    if x1 <= x0 or y1 <= y0:
        raise AnnotationError(where, f"box {values} has no area (need x1 > x0 and y1 > y0)")
    if size is not None:
        w, h = size
        x0, y0, x1, y1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(w)), min(y1, float(h))
        if x1 <= x0 or y1 <= y0:
            raise AnnotationError(where, f"box {values} lies outside the {w} x {h} image")
    return np.array([x0, y0, x1, y1], dtype=np.float64)


def xywh_box(box: Any, size: tuple[int, int] | None, where: str) -> np.ndarray:
    """A ``[x, y, width, height]`` box (COCO, CUB) checked as ``[x0, y0, x1, y1]``."""
    try:
        x, y, w, h = (float(v) for v in box) if isinstance(box, (list, tuple)) else ()
    except (TypeError, ValueError):
        raise AnnotationError(where, f"bbox must be [x, y, width, height], got {box!r}") from None
    return check_box([x, y, x + w, y + h], size, where)


def image_size(width: Any, height: Any, where: str) -> tuple[int, int] | None:
    """(width, height) of an annotation, None when neither is given."""
    if width is None and height is None:
        return None
    try:
        w, h = int(float(width)), int(float(height))
    except (TypeError, ValueError):
        raise AnnotationError(
            where, f"image size must be two integers, got {width!r} x {height!r}"
        ) from None
    if w < 1 or h < 1:
        raise AnnotationError(where, f"image size must be positive, got {w} x {h}")
    return (w, h)


def key_of(path: Path, root: Path) -> str:
    """The sample key of an image: its path relative to the root, else as given."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def require_file(path: Path, where: str) -> Path:
    if not path.is_file():
        raise AnnotationError(where, f"image file {path} not found")
    return path


def read_json(path: Path) -> Any:
    if not path.is_file():
        raise AnnotationError(path, "annotation file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AnnotationError(path, f"not valid JSON ({err})") from None


# -- classes ----------------------------------------------------------------------------------
def read_class_map(path: str | Path) -> dict[str, int]:
    """{dataset class name: model class index} from a JSON object or a text file of names.

    A text file lists the model's classes, one per line, in index order. A JSON object maps names
    to indices. Names are matched case-insensitively.
    """
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(path, "class map file not found")
    if path.suffix.lower() == ".json":
        data = read_json(path)
        if not isinstance(data, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in data.values()
        ):
            raise AnnotationError(path, 'expected {"class name": model class index, ...}')
        return {str(k): int(v) for k, v in data.items()}
    names = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return {n: i for i, n in enumerate(names)}


def class_lookup(class_map: Mapping[str, int] | None) -> Callable[[str], int | None]:
    """Case-insensitive name -> model class index (None for names the map lacks)."""
    folded = {k.lower(): v for k, v in (class_map or {}).items()}
    return lambda name: folded.get(name.lower())


def choose_class(
    objects: Sequence[tuple[str, np.ndarray]], index_of: Callable[[str], int | None]
) -> tuple[int | None, str | None, np.ndarray]:
    """Label of the largest mapped box and the boxes of that class (all boxes if none maps)."""
    mapped = [(name, box, index_of(name)) for name, box in objects]
    known = [m for m in mapped if m[2] is not None]
    if not known:
        return None, None, np.stack([box for _, box in objects])
    area = [(b[2] - b[0]) * (b[3] - b[1]) for _, b, _ in known]
    name, _, label = known[int(np.argmax(area))]
    return label, name, np.stack([box for n, box, _ in known if n == name])
