"""Turning weighted activations into maps: the channel sum, or its ``eigen_smooth`` variant."""

from __future__ import annotations

import torch
from torch import Tensor

from eigencam.decomposition import eigen_cam


def weighted_maps(
    weights: Tensor, activations: Tensor, *, eigen_smooth: bool, center: bool = True
) -> Tensor:
    """:math:`\\sum_c w_c \\odot A_c`: weights (B, k, C) or (B, k, C, h, w) and activations
    (B, C, h, w) -> maps (B, k, h, w).

    Without ``eigen_smooth``: the channel sum. With it: the projection on the first principal
    component of each map's weighted activations (:func:`eigencam.eigen_cam`, ``center=True``
    as pytorch-grad-cam's ``eigen_smooth``), oriented by Eigen-CAM's sign rule.
    """
    if weights.ndim == 3 and not eigen_smooth:
        return torch.einsum("bkc,bchw->bkhw", weights, activations)
    weighted = (weights[..., None, None] if weights.ndim == 3 else weights) * activations[:, None]
    if not eigen_smooth:
        return weighted.sum(dim=2)
    b, k = weighted.shape[:2]
    dec = eigen_cam(weighted.flatten(0, 1), 1, center=center)
    return dec.projections.reshape(b, k, *weighted.shape[-2:]).float()
