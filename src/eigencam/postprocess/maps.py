"""Post-processing of raw maps: upsampling to the input size, normalisation to [0, 1], blur."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from eigencam.errors import InvalidParameterError, ShapeError

# A map whose range is below this fraction of its magnitude carries no spatial information
# (a constant map after float round-off in upsampling); it normalises to zeros.
_FLAT = 1e-5


def upsample(
    maps: Tensor, size: tuple[int, int], *, extent: tuple[float, float] | None = None
) -> Tensor:
    """Bilinear upsampling of (B, k, h, w) maps to (B, k, H, W) = ``size``, no corner alignment.

    ``extent`` (ey, ex), for a detector that padded its input (:mod:`eigencam.capture.geometry`):
    the grid covers ``ey * H`` by ``ex * W`` pixels from the top-left corner; the maps are
    upsampled to that size and the (H, W) image part is kept. None: the grid covers the image.
    """
    if maps.ndim != 4:
        raise ShapeError("maps", "(B, k, h, w)", tuple(maps.shape))
    size = (int(size[0]), int(size[1]))
    full = size
    if extent is not None:
        full = (max(size[0], round(size[0] * extent[0])), max(size[1], round(size[1] * extent[1])))
    if tuple(maps.shape[-2:]) == full == size:
        return maps
    src = maps if maps.dtype in (torch.float32, torch.float64) else maps.float()
    out = F.interpolate(src, size=full, mode="bilinear", align_corners=False)
    return out[..., : size[0], : size[1]]


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


def upsample_normalize(
    maps: Tensor,
    size: tuple[int, int],
    *,
    relu: bool = False,
    extent: tuple[float, float] | None = None,
) -> Tensor:
    """What explainers return as ``maps``: the ReLU (``relu``) at the maps' own resolution, then
    :func:`upsample` and :func:`normalize` (the order of the Grad-CAM paper and of the peers:
    clipping after upsampling would blur negative cells into the positive ones)."""
    return normalize(upsample(maps.clamp_min(0) if relu else maps, size, extent=extent))


def renormalize_in_boxes(maps: Tensor, boxes: Sequence[Tensor]) -> Tensor:
    """Each box min-max normalised on its own, zero outside every box, the larger value where
    boxes overlap: a detector's map inside each detection whatever the others' strength
    (pytorch-grad-cam's ``renormalize_cam_in_bounding_boxes``, batched over the boxes).

    Args:
        maps: (B, k, H, W) maps (any range).
        boxes: B tensors of shape (N_i, 4), (x0, y0, x1, y1) in pixels of the maps' grid.

    Returns:
        (B, k, H, W) float32 in [0, 1]; an image without boxes gets all zeros.
    """
    if maps.ndim != 4:
        raise ShapeError("maps", "(B, k, H, W)", tuple(maps.shape))
    if len(boxes) != maps.shape[0]:
        raise InvalidParameterError(
            f"boxes must give one (N, 4) tensor per image: {maps.shape[0]} images, "
            f"{len(boxes)} box tensors"
        )
    height, width = maps.shape[-2:]
    ys = torch.arange(height, device=maps.device, dtype=torch.float32) + 0.5
    xs = torch.arange(width, device=maps.device, dtype=torch.float32) + 0.5
    out = torch.zeros(maps.shape, dtype=torch.float32, device=maps.device)
    for i, b in enumerate(boxes):  # boxes differ in number per image; each image is vectorised
        b = torch.as_tensor(b, dtype=torch.float32, device=maps.device).reshape(-1, 4)
        if not len(b):
            continue
        inside_y = (ys[None, :] >= b[:, 1:2]) & (ys[None, :] < b[:, 3:4])  # (N, H)
        inside_x = (xs[None, :] >= b[:, 0:1]) & (xs[None, :] < b[:, 2:3])  # (N, W)
        mask = inside_y[:, :, None] & inside_x[:, None, :]  # (N, H, W)
        m = maps[i].float()[None]  # (1, k, H, W)
        inf = torch.tensor(float("inf"), device=maps.device)
        lo = torch.where(mask[:, None], m, inf).amin(dim=(-2, -1), keepdim=True)
        hi = torch.where(mask[:, None], m, -inf).amax(dim=(-2, -1), keepdim=True)
        span = hi - lo
        valid = torch.isfinite(span) & (span > 0)
        scaled = torch.where(valid, (m - lo) / torch.where(valid, span, 1.0), 0.0)
        per_box = torch.where(mask[:, None], scaled, 0.0)  # (N, k, H, W)
        out[i] = per_box.amax(dim=0)
    return out


def gaussian_kernel1d(
    sigma: float,
    radius: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """(2 radius + 1,) taps ``exp(-t^2 / (2 sigma^2))``, t = -radius..radius, summing to 1: every
    Gaussian of eigencam (map smoothing, fixation densities, the SSIM window)."""
    t = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    taps = torch.exp(-(t * t) / (2 * sigma**2))
    return taps / taps.sum()


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
    kernel = gaussian_kernel1d(sigma, radius, device=maps.device)
    flat = maps.reshape(b * k, 1, h, w).float()
    flat = F.pad(flat, (radius, radius, 0, 0), mode="reflect")
    flat = F.conv2d(flat, kernel.view(1, 1, 1, -1))
    flat = F.pad(flat, (0, 0, radius, radius), mode="reflect")
    flat = F.conv2d(flat, kernel.view(1, 1, -1, 1))
    return flat.reshape(b, k, h, w)
