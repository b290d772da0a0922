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


def gaussian_blur(maps: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of (B, k, H, W) maps, sigma in pixels, kernel radius 3 sigma.

    Borders are reflected (no dark frame). sigma <= 0 returns the maps unchanged.
    """
    if maps.ndim != 4:
        raise ShapeError("maps", "(B, k, H, W)", tuple(maps.shape))
    if sigma <= 0:
        return maps
    b, k, h, w = maps.shape
    radius = max(1, round(3.0 * sigma))
    radius = min(radius, h - 1, w - 1) if min(h, w) > 1 else 0
    if radius == 0:
        return maps
    x = torch.arange(-radius, radius + 1, dtype=torch.float32, device=maps.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(maps.dtype if maps.is_floating_point() else torch.float32)
    flat = maps.reshape(b * k, 1, h, w).float()
    flat = F.pad(flat, (radius, radius, 0, 0), mode="reflect")
    flat = F.conv2d(flat, kernel.view(1, 1, 1, -1).float())
    flat = F.pad(flat, (0, 0, radius, radius), mode="reflect")
    flat = F.conv2d(flat, kernel.view(1, 1, -1, 1).float())
    return flat.reshape(b, k, h, w)
