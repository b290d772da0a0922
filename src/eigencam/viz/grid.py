"""Figure grids like the paper's Figures 2-4: the image, then one captioned overlay per method."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from eigencam.errors import InvalidParameterError
from eigencam.viz.overlay import add_caption, overlay


def fit_size(width: int, height: int, longest: int) -> tuple[int, int]:
    """(width, height) scaled so that the longer side is ``longest`` pixels."""
    scale = longest / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_rgb(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an RGB uint8 image to (width, height) with a bicubic filter."""
    from PIL import Image

    if (image.shape[1], image.shape[0]) == tuple(size):
        return np.asarray(image, dtype=np.uint8)
    resized = Image.fromarray(np.asarray(image, dtype=np.uint8)).resize(size, Image.BICUBIC)
    return np.asarray(resized)


def heat_tile(
    image: np.ndarray,
    heat: np.ndarray | None,
    caption: Sequence[str],
    *,
    alpha: float = 0.5,
    colormap: str = "jet",
) -> np.ndarray:
    """One captioned cell: the heat map over the image, or the image alone (``heat`` None)."""
    rgb = image if heat is None else overlay(image, heat, alpha=alpha, colormap=colormap)
    return add_caption(rgb, list(caption))


def failed_tile(size: tuple[int, int], caption: Sequence[str]) -> np.ndarray:
    """A grey cell for a method that failed on this image, captioned with the reason."""
    width, height = size
    return add_caption(np.full((height, width, 3), 200, np.uint8), list(caption))


def compose_grid(
    rows: Sequence[Sequence[np.ndarray | None]],
    *,
    title: Sequence[str] = (),
    pad: int = 6,
    background: int = 255,
) -> np.ndarray:
    """Lay out cells in rows and columns under an optional ``title`` (lines of text).

    Args:
        rows: cells (RGB uint8 arrays, captions included) or None for an empty cell. Each
            column is as wide as its widest cell, each row as tall as its tallest.
        pad, background: pixels between cells and around the grid; grey level of the page.

    Returns:
        The figure, RGB uint8 (H, W, 3).
    """
    if not rows or not any(c is not None for row in rows for c in row):
        raise InvalidParameterError("compose_grid needs at least one cell")
    n_cols = max(len(row) for row in rows)
    widths = [
        max((row[j].shape[1] for row in rows if j < len(row) and row[j] is not None), default=0)
        for j in range(n_cols)
    ]
    heights = [max((c.shape[0] for c in row if c is not None), default=0) for row in rows]
    total_w = sum(widths) + pad * (n_cols + 1)
    total_h = sum(heights) + pad * (len(rows) + 1)
    page = np.full((total_h, total_w, 3), background, np.uint8)
    y = pad
    for row, h in zip(rows, heights):
        x = pad
        for j in range(n_cols):
            cell = row[j] if j < len(row) else None
            if cell is not None:
                page[y : y + cell.shape[0], x : x + cell.shape[1]] = cell
            x += widths[j] + pad
        y += h + pad
    if title:
        strip = np.full((1, total_w, 3), background, np.uint8)
        banner = add_caption(strip, list(title), background=background)[1:]
        page = np.concatenate([banner, page], axis=0)
    return page
