"""A map back on the original image: the region the model saw, upsampled and pasted in place."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from eigencam.postprocess.maps import normalize, upsample


class HasCropRegion(Protocol):
    """What placement needs from a :class:`~eigencam.models.Preprocessing`."""

    def crop_region(self, width: int, height: int) -> tuple[float, float, float, float]: ...


def paste_region(
    maps: Tensor,
    region: Sequence[float],
    size: tuple[int, int],
    *,
    extent: tuple[float, float] | None = None,
    renormalize: bool = False,
) -> Tensor:
    """(k, h, w) maps covering ``region`` of an image -> (k, H, W) float32 maps over the image:
    upsampled (bilinear) straight to the region's pixels and pasted in place, zero outside the
    region; the part of the region outside the image (a letterbox's padding) is dropped.

    Args:
        maps: (k, h, w) maps on the model's input grid.
        region: (x0, y0, x1, y1) the maps cover, in the image's pixels
            (:meth:`Preprocessing.crop_region`; it may reach outside the image).
        size: (W, H) of the image.
        extent: see :func:`eigencam.postprocess.maps.upsample`.
        renormalize: min-max normalise each map over the part inside the image.
    """
    width, height = size
    x0, y0, x1, y1 = (float(v) for v in region)
    cx0, cy0 = round(x0), round(y0)
    cw, ch = max(1, round(x1) - cx0), max(1, round(y1) - cy0)
    up = upsample(maps[None].float(), (ch, cw), extent=extent)[0]
    sx0, sy0 = max(0, -cx0), max(0, -cy0)
    dx0, dy0 = max(0, cx0), max(0, cy0)
    w = max(0, min(cw - sx0, width - dx0))
    h = max(0, min(ch - sy0, height - dy0))
    part = up[:, sy0 : sy0 + h, sx0 : sx0 + w]
    if renormalize:
        part = normalize(part)
    if (h, w) == (height, width):
        return part
    canvas = torch.zeros(maps.shape[0], height, width, device=part.device)
    canvas[:, dy0 : dy0 + h, dx0 : dx0 + w] = part
    return canvas


def maps_at_original(
    raw: Tensor,
    preprocessing: HasCropRegion,
    size: tuple[int, int],
    *,
    relu: bool = False,
    extent: tuple[float, float] | None = None,
) -> np.ndarray:
    """Raw maps (k, h, w) -> float32 maps (k, H, W) over the original image, ``size`` = (W, H).

    :func:`paste_region` over the region the model saw (:meth:`Preprocessing.crop_region`),
    normalised over its part inside the image (``center-crop``: zero outside the crop;
    ``letterbox``: the padding dropped). ``extent`` is :attr:`CAMResult.extent`; ``relu`` clips
    the raw maps at their own resolution, before upsampling (as explainers do).
    """
    maps = raw.float().clamp_min(0) if relu else raw.float()
    region = preprocessing.crop_region(*size)
    return paste_region(maps, region, size, extent=extent, renormalize=True).cpu().numpy()
