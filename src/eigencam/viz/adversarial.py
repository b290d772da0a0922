"""The figure of ``eigencam attack``, laid out as Figure 4 of the Eigen-CAM paper.

A row for the clean image and one for its adversarial version: the image, then each method's
map over it, with the ground-truth boxes in green, the method's localization box in cyan, and
the adversarial class as a red label on the adversarial row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from eigencam.viz.grid import compose_grid, failed_tile, fit_size, resize_rgb
from eigencam.viz.overlay import _font, add_caption, draw_boxes, overlay

GREEN = (0, 200, 0)
RED = (220, 0, 0)
CYAN = (0, 220, 255)


@dataclass(frozen=True)
class MethodCells:
    """One method's column.

    Attributes:
        name: column title.
        clean, adversarial: (H, W) maps in [0, 1] at the images' size, or None when the method
            failed on this image (a grey cell).
        clean_box, adversarial_box: the localization boxes ``[x0, y0, x1, y1]`` in the images'
            pixels, or None / NaN when the map gives none.
        clean_caption, adversarial_caption: text under each cell (after the name).
    """

    name: str
    clean: np.ndarray | None
    adversarial: np.ndarray | None
    clean_box: Sequence[float] | None = None
    adversarial_box: Sequence[float] | None = None
    clean_caption: str = ""
    adversarial_caption: str = ""


def _tag(rgb: np.ndarray, tag: str, pad: int) -> np.ndarray:
    """``tag`` in white on a red band at the top-left corner."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    font = _font(int(np.clip(image.size[0] / 16, 10, 22)))
    left, top, right, bottom = draw.textbbox((0, 0), tag, font=font)
    draw.rectangle((0, 0, right - left + 2 * pad, bottom - top + 2 * pad), fill=RED)
    draw.text((pad - left, pad - top), tag, fill=(255, 255, 255), font=font)
    return np.asarray(image)


def adversarial_figure(
    clean: np.ndarray,
    adversarial: np.ndarray,
    gt_boxes: np.ndarray,
    methods: Sequence[MethodCells],
    *,
    clean_caption: str,
    adversarial_caption: str,
    adversarial_tag: str,
    title: Sequence[str] = (),
    tile: int = 224,
    alpha: float = 0.5,
    colormap: str = "jet",
) -> np.ndarray:
    """The RGB uint8 figure of one image.

    Args:
        clean, adversarial: (H, W, 3) uint8 images as the model saw them.
        gt_boxes: (G, 4) ground-truth boxes in those images' pixels (NaN rows ignored).
        methods: one :class:`MethodCells` per method, in column order.
        clean_caption, adversarial_caption, title: captions of the image cells; lines on top.
        adversarial_tag: the red label of the adversarial row (the adversarial class).
        tile, alpha, colormap: longer side of each cell in pixels; the heat-map overlay.
    """
    scale = tile / max(clean.shape[:2])
    size = fit_size(clean.shape[1], clean.shape[0], tile)
    gt = np.asarray(gt_boxes, np.float64).reshape(-1, 4) * scale

    def cell(image, heat, box, tag, lines):
        rgb = image if heat is None else overlay(image, heat, alpha=alpha, colormap=colormap)
        rgb = resize_rgb(rgb, size)
        width = max(2, round(max(rgb.shape[:2]) / 120))
        rgb = draw_boxes(rgb, gt, color=GREEN, width=width)
        if box is not None:
            pred = np.asarray(box, np.float64).reshape(-1, 4) * scale
            rgb = draw_boxes(rgb, pred, color=CYAN, width=max(1, width - 1))
        return add_caption(_tag(rgb, tag, max(2, width)) if tag else rgb, lines)

    top = [cell(clean, None, None, None, ["clean image", clean_caption])]
    bottom = [cell(adversarial, None, None, adversarial_tag, ["adversarial", adversarial_caption])]
    for m in methods:
        if m.clean is None or m.adversarial is None:
            top.append(failed_tile(size, [m.name, "failed"]))
            bottom.append(failed_tile(size, [m.name, "failed"]))
            continue
        top.append(cell(clean, m.clean, m.clean_box, None, [m.name, m.clean_caption]))
        lines = [m.name, m.adversarial_caption]
        bottom.append(cell(adversarial, m.adversarial, m.adversarial_box, adversarial_tag, lines))
    return compose_grid([top, bottom], title=list(title))
