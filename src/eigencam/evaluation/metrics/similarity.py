r"""How alike two explanation maps are: pure, batched functions over precomputed maps.

Every function takes two batches ``a`` and ``b`` of the same shape (B, H, W) (or (B, 1, H, W)),
normalised to [0, 1] as explainers return them, and returns one value per pair (B,) as float64
on the maps' device: :func:`pearson`, :func:`ssim`, :func:`top_region_iou`. They are what
``eigencam attack`` reports for the maps of a clean image and of its adversarial version. For
boxes, use :func:`eigencam.postprocess.boxes.box_iou`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from eigencam.errors import InvalidParameterError, ShapeError, check
from eigencam.postprocess.maps import gaussian_kernel1d

SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _maps(maps: Tensor, name: str = "maps") -> Tensor:
    """A (B, H, W) batch of maps (a (B, 1, H, W) batch is squeezed)."""
    check(
        isinstance(maps, Tensor),
        f"{name} must be torch tensors, got {type(maps).__name__}; "
        "wrap numpy arrays with torch.as_tensor",
    )
    return maps[:, 0] if maps.ndim == 4 and maps.shape[1] == 1 else maps


def _pair(a: Tensor, b: Tensor, name: str = "maps") -> tuple[Tensor, Tensor]:
    """Two (B, H, W) float64 batches of the same shape."""
    a, b = _maps(a, name), _maps(b, name)
    if a.ndim != 3 or a.shape != b.shape:
        raise ShapeError(
            name,
            "two (B, H, W) batches of the same shape",
            f"{tuple(a.shape)} and {tuple(b.shape)}",
            "Pass result.maps[:, 0] of both results.",
        )
    return a.double(), b.double()


def pearson(a: Tensor, b: Tensor) -> Tensor:
    r"""Pearson correlation of the pixel values of each pair of maps,
    :math:`r = \sum_i \hat a_i \hat b_i / \sqrt{\sum_i \hat a_i^2 \sum_i \hat b_i^2}` with
    :math:`\hat a = a - \bar a`, :math:`\hat b = b - \bar b`.

    Args:
        a, b: (B, H, W) maps.

    Returns:
        (B,) float64 in [-1, 1]; NaN where either map is constant.
    """
    a, b = _pair(a, b)
    ac = a.flatten(1) - a.flatten(1).mean(1, keepdim=True)
    bc = b.flatten(1) - b.flatten(1).mean(1, keepdim=True)
    denom = (ac.square().sum(1) * bc.square().sum(1)).sqrt()
    r = (ac * bc).sum(1) / denom
    return torch.where(denom > 0, r.clamp(-1.0, 1.0), torch.full_like(r, float("nan")))


def gaussian_window(sigma: float = 1.5, size: int = 11) -> Tensor:
    """The normalised 1-D Gaussian window (size,) used by :func:`ssim` (float64)."""
    if size < 1 or size % 2 == 0:
        raise InvalidParameterError(f"window size must be a positive odd number, got {size}")
    if not sigma > 0:
        raise InvalidParameterError(f"sigma must be > 0, got {sigma}")
    return gaussian_kernel1d(float(sigma), size // 2, dtype=torch.float64)


def _filter_valid(x: Tensor, taps: Tensor) -> Tensor:
    """Separable filter of (N, 1, H, W) without padding: (N, 1, H - s + 1, W - s + 1)."""
    x = F.conv2d(x, taps.view(1, 1, 1, -1))
    return F.conv2d(x, taps.view(1, 1, -1, 1))


def ssim(
    a: Tensor,
    b: Tensor,
    *,
    sigma: float = 1.5,
    window: int = 11,
    data_range: float = 1.0,
    k1: float = SSIM_K1,
    k2: float = SSIM_K2,
) -> Tensor:
    r"""Mean structural similarity (Wang, Bovik, Sheikh & Simoncelli, IEEE TIP 2004) of each pair.

    .. math:: \mathrm{SSIM}(a, b) = \operatorname{mean}_{p}
       \frac{(2 \mu_a \mu_b + C_1)(2 \sigma_{ab} + C_2)}
            {(\mu_a^2 + \mu_b^2 + C_1)(\sigma_a^2 + \sigma_b^2 + C_2)},
       \qquad C_1 = (K_1 L)^2,\ C_2 = (K_2 L)^2,

    with Gaussian-weighted local means, variances and covariance, the mean over the positions p
    where the window lies inside the map (no padding): scikit-image's ``structural_similarity(a,
    b, data_range=1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``.

    Args:
        a, b: (B, H, W) maps, H and W at least ``window``.
        sigma: standard deviation of the Gaussian window.
        window: window side (odd).
        data_range: L, the range of the values (1 for normalised maps).
        k1, k2: the stabilising constants' factors.

    Returns:
        (B,) float64; 1 for identical maps, in [-1, 1].
    """
    a, b = _pair(a, b)
    if min(a.shape[-2:]) < window:
        raise ShapeError(
            "maps", f"(B, H, W) with H, W >= {window} (the SSIM window)", tuple(a.shape)
        )
    taps = gaussian_window(sigma, window).to(a.device)
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    n = a.shape[0]
    # One filtering pass over the five images the statistics need.
    stack = torch.cat([a, b, a * a, b * b, a * b])[:, None]
    mu_a, mu_b, aa, bb, ab = _filter_valid(stack, taps)[:, 0].split(n)
    var_a = aa - mu_a * mu_a
    var_b = bb - mu_b * mu_b
    cov = ab - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2)
    return (num / den).flatten(1).mean(1)


def top_fraction_mask(maps: Tensor, fraction: float = 0.15) -> Tensor:
    """The most relevant ``fraction`` of each map's pixels, as a boolean mask.

    The region is every pixel whose value reaches the k-th largest value, k =
    ``round(fraction * H * W)`` (ties at that value are all kept, so the region is never cut
    arbitrarily through a plateau), except pixels equal to the map's minimum: when fewer than
    k pixels lie above the floor (a ReLU-clipped map with a small support), the region is the
    support, and a constant map has an empty region.

    Args:
        maps: (B, H, W) maps.
        fraction: share of the pixels, in (0, 1].

    Returns:
        (B, H, W) bool.
    """
    check(0.0 < fraction <= 1.0, f"fraction must be in (0, 1], got {fraction}")
    m = _maps(maps)
    if m.ndim != 3:
        raise ShapeError("maps", "(B, H, W)", tuple(maps.shape))
    flat = m.flatten(1).double()
    k = max(1, round(fraction * flat.shape[1]))
    kth = flat.topk(k, dim=1).values[:, -1:]
    floor = flat.min(1, keepdim=True).values
    mask = (flat >= kth) & (flat > floor)
    return mask.view(m.shape)


def mask_iou(a: Tensor, b: Tensor) -> Tensor:
    """Intersection over union of boolean masks (B, H, W) -> (B,) float64; NaN if both empty."""
    if a.shape != b.shape or a.dtype != torch.bool or b.dtype != torch.bool:
        raise ShapeError(
            "masks", "two boolean (B, H, W) masks of the same shape", f"{a.shape}, {b.shape}"
        )
    inter = (a & b).flatten(1).sum(1).double()
    union = (a | b).flatten(1).sum(1).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.full_like(inter, float("nan")))


def top_region_iou(a: Tensor, b: Tensor, fraction: float = 0.15) -> Tensor:
    """IoU of the two maps' :func:`top_fraction_mask` regions, per pair (B,) float64."""
    a, b = _pair(a, b)
    return mask_iou(top_fraction_mask(a, fraction), top_fraction_mask(b, fraction))
