"""Turning weighted activations into maps: the channel sum, or its ``eigen_smooth`` variant."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from eigencam.decomposition import eigen_cam

#: Sign rules of the principal components: ``mean`` (each positively correlated with the
#: channel-mean map), ``numpy`` (whatever ``numpy.linalg.svd`` returns, as pytorch-grad-cam).
SIGNS = ("mean", "numpy")


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


def numpy_svd_signs(activations: Tensor, projections: Tensor, *, center: bool) -> Tensor:
    """Signs (B, k) that turn our oriented projections into the ones ``numpy.linalg.svd`` gives.

    pytorch-grad-cam projects on ``VT[i]`` of ``numpy.linalg.svd(O)`` (O centered, one image at
    a time), whose sign is whatever LAPACK returns. This recomputes that SVD on the host for
    each image (thin SVD: the same first rows of VT as ``full_matrices=True``) and compares.
    """
    b, c, h, w = activations.shape
    k = projections.shape[1]
    acts = activations.detach().to("cpu", torch.float32).numpy().reshape(b, c, h * w)
    ours = projections.detach().to("cpu", torch.float64).numpy().reshape(b, k, h * w)
    signs = np.ones((b, k))
    for i in range(b):
        o = np.nan_to_num(acts[i]).T  # (n, C), as pytorch-grad-cam builds it
        if center:
            o = o - o.mean(axis=0)
        _, _, vt = np.linalg.svd(o, full_matrices=False)
        theirs = o @ vt[:k].T  # (n, k)
        dots = np.einsum("kn,nk->k", ours[i], theirs)
        signs[i] = np.where(dots < 0, -1.0, 1.0)
    return torch.as_tensor(signs, dtype=projections.dtype, device=projections.device)
