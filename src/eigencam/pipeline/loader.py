"""Threaded image loading and batching: decoding runs while the model works."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eigencam.errors import ImageReadError
from eigencam.io.images import DEFAULT_MAX_PIXELS, EncodedImage, decode_image, load_image
from eigencam.models.preprocessing import Preprocessing


@dataclass
class LoadedImage:
    """One decoded image, resized for the model.

    Attributes:
        index: position in the input list.
        path: the file (for an :class:`~eigencam.io.EncodedImage`, its name).
        pixels: uint8 (H, W, 3) at the model's input size.
        size: (width, height) of the original image.
        original: the original RGB image (kept only when the caller needs it, else None).
    """

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


def _load_one(
    index: int,
    source: Path | EncodedImage,
    pre: Preprocessing,
    max_pixels: int | None,
    keep: bool,
) -> LoadedImage | LoadFailure:
    path = Path(source.name) if isinstance(source, EncodedImage) else source
    try:
        if isinstance(source, EncodedImage):
            image = decode_image(source.data, source.name, max_pixels=max_pixels)
        else:
            image = load_image(source, max_pixels=max_pixels)
    except ImageReadError as err:
        return LoadFailure(index, path, err.cause)
    return LoadedImage(index, path, pre.resize_image(image), image.size, image if keep else None)


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

    ``paths`` holds image files or :class:`~eigencam.io.EncodedImage` (bytes in memory, decoded
    with the same checks as files).

    Images are decoded and resized by ``workers`` threads, at most a couple of batches ahead
    of the consumer, so memory stays bounded on any dataset size.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    window = max(2 * batch_size, workers * 2, 1)
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="eigencam-load")
    pending: deque[Future] = deque()
    todo = iter(enumerate(paths))
    batch: list[LoadedImage] = []
    failures: list[LoadFailure] = []
    try:
        while True:
            while len(pending) < window:
                nxt = next(todo, None)
                if nxt is None:
                    break
                index, item = nxt
                source = item if isinstance(item, EncodedImage) else Path(item)
                pending.append(
                    pool.submit(_load_one, index, source, preprocessing, max_pixels, keep_original)
                )
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
