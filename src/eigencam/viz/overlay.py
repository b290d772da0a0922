"""Heat-map overlays, captions and detection boxes; matplotlib and Pillow load when used."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from eigencam.errors import InvalidParameterError, ShapeError, check_range


@functools.cache
def colormap_lut(name: str) -> np.ndarray:
    """A (256, 3) uint8 lookup table for a matplotlib colormap name (``jet``, ``viridis``...)."""
    import matplotlib

    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        known = ", ".join(sorted(n for n in matplotlib.colormaps if not n.endswith("_r"))[:12])
        raise InvalidParameterError(
            f"unknown colormap {name!r}; use a matplotlib colormap name, e.g. {known}"
        ) from None
    values = cmap(np.linspace(0.0, 1.0, 256))[:, :3]
    return np.round(values * 255).astype(np.uint8)


def colorize(heat: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """Map a (H, W) array in [0, 1] to RGB uint8 (H, W, 3)."""
    heat = np.asarray(heat, dtype=np.float32)
    if heat.ndim != 2:
        raise ShapeError("heat map", "(H, W)", heat.shape)
    idx = np.clip(np.nan_to_num(heat, nan=0.0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.take(colormap_lut(colormap), idx, axis=0)  # 3x faster than lut[idx]


def overlay(
    image: np.ndarray, heat: np.ndarray, *, alpha: float = 0.5, colormap: str = "jet"
) -> np.ndarray:
    """Blend a heat map over an RGB image of the same H x W: ``(1 - alpha) image + alpha heat``."""
    check_range("alpha", alpha, 0.0, 1.0)
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[:2] != np.shape(heat)[:2]:
        raise ShapeError(
            "image and heat map", "(H, W, 3) and (H, W)", f"{image.shape} and {np.shape(heat)}"
        )
    from PIL import Image

    colored = Image.fromarray(colorize(heat, colormap))
    base = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    return np.asarray(Image.blend(base, colored, float(alpha)))


@functools.cache
def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def add_caption(image: np.ndarray, lines: Sequence[str], *, background: int = 255) -> np.ndarray:
    """Add a text band under an RGB image: one line of text per entry of ``lines``."""
    from PIL import Image, ImageDraw

    height, width = image.shape[:2]
    size = int(np.clip(width / 28, 11, 28))
    font = _font(size)
    pad = max(3, size // 3)
    band = pad * 2 + len(lines) * (size + pad)
    canvas = Image.new("RGB", (width, height + band), (background,) * 3)
    canvas.paste(Image.fromarray(np.asarray(image, dtype=np.uint8)), (0, 0))
    draw = ImageDraw.Draw(canvas)
    y = height + pad
    for line in lines:
        draw.text((pad, y), _fit(draw, line, font, width - 2 * pad), fill=(0, 0, 0), font=font)
        y += size + pad
    return np.asarray(canvas)


def _fit(draw, text: str, font, max_width: int) -> str:
    if draw.textlength(text, font=font) <= max_width:
        return text
    while text and draw.textlength(text + "...", font=font) > max_width:
        text = text[:-1]
    return text + "..."


# Distinct colours for boxes, cycled by class index (RGB, the Ultralytics palette).
_PALETTE = bytes.fromhex(
    "ff3838 32cd32 1e90ff ffb21d cfd231 48f90a 92cc17 3ddb86 1a9334 00d4bb"
    "2c99a8 00c2ff 344593 6473ff 0018ec 8438ff 520085 cb38ff ff95c8 ff37c7"
)
_BOX_COLOURS = tuple(tuple(_PALETTE[i : i + 3]) for i in range(0, len(_PALETTE), 3))


def draw_boxes(
    image: np.ndarray,
    boxes: Sequence[Sequence[float]],
    labels: Sequence[str] | None = None,
    classes: Sequence[int] | None = None,
    *,
    width: int | None = None,
    color: tuple[int, int, int] | None = None,
) -> np.ndarray:
    """Draw boxes (x0, y0, x1, y1, in pixels) with optional text labels on an RGB image (a copy).

    Args:
        image: (H, W, 3) uint8.
        boxes: N boxes; a box with a non-finite coordinate (NaN padding, no box) is skipped.
        labels: N captions ("dog 0.87"), or None.
        classes: N class indices choosing each box's colour, or None (one colour).
        width: line width in pixels (default: about 0.3% of the image's larger side, >= 2).
        color: one RGB colour for every box, instead of the class colours.
    """
    from PIL import Image, ImageDraw

    image = np.asarray(image, dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ShapeError("image", "(H, W, 3) RGB", image.shape)
    if labels is not None and len(labels) != len(boxes):
        raise InvalidParameterError(
            f"labels must give one caption per box: {len(boxes)} boxes, {len(labels)} labels"
        )
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    height, img_width = image.shape[:2]
    line = width or max(2, round(max(height, img_width) / 300))
    font = _font(int(np.clip(max(height, img_width) / 50, 10, 24)))
    for i, box in enumerate(boxes):
        x0, y0, x1, y1 = (float(v) for v in box)
        if not np.isfinite((x0, y0, x1, y1)).all():
            continue
        k = classes[i] if classes is not None else 0
        colour = color or _BOX_COLOURS[k % len(_BOX_COLOURS)]
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=line)
        if labels is not None and labels[i]:
            text = str(labels[i])
            left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
            tw, th = right - left, bottom - top
            ty = y0 - th - 2 * line if y0 - th - 2 * line >= 0 else y0
            draw.rectangle((x0, ty, x0 + tw + 2 * line, ty + th + 2 * line), fill=colour)
            draw.text((x0 + line - left, ty + line - top), text, fill=(255, 255, 255), font=font)
    return np.asarray(canvas)
