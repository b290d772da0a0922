"""Post-processing of raw maps: upsampling to the input size and normalisation to [0, 1]."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from eigencam.errors import ShapeError

# A map whose range is below this fraction of its magnitude carries no spatial information
# (a constant map after float round-off in upsampling); it normalises to zeros.
_FLAT = 1e-5


def upsample(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear upsampling of (B, k, h, w) maps to (B, k, H, W), ``align_corners=False``."""
    if maps.ndim != 4:
        raise ShapeError("maps", "(B, k, h, w)", tuple(maps.shape))
    size = (int(size[0]), int(size[1]))
    if tuple(maps.shape[-2:]) == size:
        return maps
    src = maps if maps.is_floating_point() else maps.float()
    if src.dtype in (torch.float16, torch.bfloat16):
        src = src.float()
    return F.interpolate(src, size=size, mode="bilinear", align_corners=False)


def normalize(maps: Tensor, *, relu: bool = False) -> Tensor:
    """Min-max normalise each map over its last two dimensions to [0, 1] (a new tensor).

    Args:
        maps: (..., H, W) floating tensor.
        relu: clip negative values to 0 first (the Grad-CAM / pytorch-grad-cam convention).

    Returns:
        Maps of the same shape with min 0 and max 1; a map with no spatial variation (all equal
        up to round-off) becomes all zeros. A map holding NaN stays NaN (never silently zero).
    """
    if maps.ndim < 2:
        raise ShapeError("maps", "(..., H, W)", tuple(maps.shape))
    x = maps.clamp_min(0) if relu else maps
    flat = x.flatten(-2)
    lo = flat.amin(-1, keepdim=True)
    hi = flat.amax(-1, keepdim=True)
    span = hi - lo
    magnitude = torch.maximum(hi.abs(), lo.abs())
    informative = span > _FLAT * magnitude
    out = torch.where(informative, (flat - lo) / torch.where(informative, span, 1.0), 0.0)
    out = torch.where(span.isnan(), span, out)
    return out.reshape(x.shape)


def upsample_normalize(maps: Tensor, size: tuple[int, int], *, relu: bool = False) -> Tensor:
    """:func:`upsample` then :func:`normalize`: what explainers return as ``maps``."""
    return normalize(upsample(maps, size), relu=relu)
