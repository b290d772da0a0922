"""Where a run's batches come from: images decoded and resized in threads while the model works."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from eigencam.errors import ImageReadError, check_range
from eigencam.io.images import DEFAULT_MAX_PIXELS, EncodedImage, decode_image, load_image
from eigencam.models.preprocessing import Preprocessing

if TYPE_CHECKING:
    from eigencam.runs.options import RunOptions


@dataclass
class LoadedImage:
    """One decoded image: its ``index`` in the input list, its ``path`` (an
    :class:`~eigencam.io.EncodedImage`'s name), its uint8 (H, W, 3) ``pixels`` at the model's
    input size, the (width, height) ``size`` of the original, and the ``original`` RGB image
    when the caller keeps it (else None)."""

    index: int
    path: Path
    pixels: np.ndarray
    size: tuple[int, int]
    original: Any = None


@dataclass
class LoadFailure:
    """An input that could not be read."""

    index: int
    path: Path
    error: str


def iter_batches(
    paths: Sequence[str | Path | EncodedImage],
    preprocessing: Preprocessing,
    *,
    batch_size: int = 16,
    workers: int = 2,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    keep_original: bool = False,
) -> Iterator[tuple[list[LoadedImage], list[LoadFailure]]]:
    """Yield (images, failures) in input order, ``batch_size`` readable images at a time.

    ``paths`` holds image files or :class:`~eigencam.io.EncodedImage`. Images are decoded and
    resized by ``workers`` threads, at most a couple of batches ahead of the consumer, so memory
    stays bounded on any dataset size.
    """
    check_range("batch_size", batch_size, 1)
    check_range("workers", workers, 0)

    def load(index: int, item: str | Path | EncodedImage) -> LoadedImage | LoadFailure:
        encoded = isinstance(item, EncodedImage)
        path = Path(item.name if encoded else item)
        try:
            if encoded:
                image = decode_image(item.data, item.name, max_pixels=max_pixels)
            else:
                image = load_image(path, max_pixels=max_pixels)
        except ImageReadError as err:
            return LoadFailure(index, path, err.cause)
        pixels = preprocessing.resize_image(image)
        return LoadedImage(index, path, pixels, image.size, image if keep_original else None)

    window = max(2 * batch_size, workers * 2, 1)
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="eigencam-load")
    pending: deque[Future] = deque()
    todo = iter(enumerate(paths))
    batch: list[LoadedImage] = []
    failures: list[LoadFailure] = []
    try:
        while True:
            for index, item in itertools.islice(todo, window - len(pending)):
                pending.append(pool.submit(load, index, item))
            if not pending:
                break
            item = pending.popleft().result()
            if isinstance(item, LoadFailure):
                failures.append(item)
            else:
                batch.append(item)
            if len(batch) == batch_size:
                yield batch, failures
                batch, failures = [], []
        if batch or failures:
            yield batch, failures
    finally:
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class Batch:
    """One batch of a run: ``(LoadedImage, item)`` pairs (an item, a dataset sample or an input
    file, has a ``key`` and a ``path``) and ``{"key", "file", "error"}`` per unreadable input."""

    items: list[tuple[LoadedImage, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items) + len(self.failures)

    def fail(self, item: Any, error: str) -> None:
        """Record ``item`` as failed with ``error``."""
        self.failures.append(failure(item, error))


def failure(item: Any, error: str) -> dict[str, Any]:
    """The failure record of one input."""
    return {"key": item.key, "file": str(item.path), "error": error}


def image_batches(
    items: Sequence[Any],
    preprocessing: Preprocessing,
    options: RunOptions,
    *,
    keep_original: bool = False,
) -> Iterator[Batch]:
    """Decode the ``path`` of each item (dataset samples, input files) into batches, in order."""
    for images, failures in iter_batches(
        [it.path for it in items],
        preprocessing,
        batch_size=options.batch_size,
        workers=options.workers,
        max_pixels=options.max_pixels,
        keep_original=keep_original,
    ):
        yield Batch(
            items=[(img, items[img.index]) for img in images],
            failures=[failure(items[f.index], f.error) for f in failures],
        )


def size_mismatch(image: LoadedImage, sample: Any) -> str | None:
    """Why an annotation does not fit its image (annotated for another size), or None."""
    if sample.size is None or tuple(sample.size) == tuple(image.size):
        return None
    return (
        f"the annotation is for a {sample.size[0]} x {sample.size[1]} image but the file is "
        f"{image.size[0]} x {image.size[1]}"
    )
