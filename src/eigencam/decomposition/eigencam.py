r"""The Eigen-CAM maths (Muhammad & Yeasin, IJCNN 2020, Section III), batched.

For one image, the activations of a layer form the matrix :math:`O \in \mathbb{R}^{n \times C}`
(one row per spatial position, :math:`n = h w`, one column per channel). With the thin SVD
:math:`O = U \Sigma V^T`, the class activation map is the projection of :math:`O` on the first
right singular vector, reshaped to (h, w):

.. math::  L_{\text{Eigen-CAM}} = O V_1 = \sigma_1 U_1 .

Component i (``n_components`` > 1) is :math:`O V_i`; its explained-variance ratio is
:math:`\sigma_i^2 / \lVert O \rVert_F^2`. With ``center=True`` the per-channel mean over
positions is subtracted first (PCA, as pytorch-grad-cam computes it).

How it is computed: :math:`\sigma_i^2, V_i` are the top eigenpairs of the C x C Gram matrix
:math:`O^T O`, and :math:`\sigma_i^2, U_i` those of the n x n matrix :math:`O O^T`; we build the
smaller one, in float64, for the whole batch at once, and never form U or V in full.

Sign rule: an eigenvector is defined up to sign, and LAPACK's choice varies with the build,
the device and the batch. We orient each component so that its map has a positive Pearson
correlation with the channel-mean activation map :math:`\bar a = O \mathbf{1} / C`, the map a
"mean of all channels" CAM would show. Ties (correlation exactly 0, e.g. a 1 x 1 map) are broken
by the uncentered inner product with :math:`\bar a`, then by the sum of the map, then +1. The
rule depends only on the image's own activations, so the sign is the same on every device and
dtype and for every batch the image appears in, and it is invariant to permuting channels or
scaling the activations by a positive factor.

Numerical zero: a component whose singular value is below 1e-9 of :math:`\lVert O \rVert_F`
(all-zero or constant activations, centered) is set to an exact zero map with zero explained
variance, never NaN.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from eigencam.decomposition.solvers import SOLVERS, choose_solver, top_k_eigenpairs
from eigencam.errors import NonFiniteActivationError, ShapeError

_RELATIVE_ZERO = 1e-9


class Decomposition(NamedTuple):
    """Result of :func:`eigen_cam`.

    Attributes:
        projections: (B, k, h, w), the maps :math:`O V_i` in the activations' dtype (float32 for
            half-precision input), oriented by the sign rule.
        explained_variance_ratio: (B, k) float32, :math:`\\sigma_i^2 / \\lVert O \\rVert_F^2`.
        singular_values: (B, k) float32, :math:`\\sigma_i`.
        finite: (B,) bool, False where the activations held NaN or infinity (only meaningful
            with ``check_finite=False``; otherwise such input raises).
    """

    projections: Tensor
    explained_variance_ratio: Tensor
    singular_values: Tensor
    finite: Tensor


def eigen_cam(
    activations: Tensor,
    n_components: int = 1,
    *,
    center: bool = False,
    solver: str = "auto",
    check_finite: bool = True,
) -> Decomposition:
    """Project a batch of activations on their first principal components.

    Args:
        activations: (B, C, h, w) floating tensor, any device. Half precision is upcast; the
            solve runs in float64.
        n_components: k, the number of components (maps) per image, 1 <= k <= min(h*w, C).
        center: subtract each channel's spatial mean first (PCA) instead of the paper's
            uncentered SVD.
        solver: ``auto`` (by device and size), ``eigh``, ``svd`` (thin SVD of O, the
            reference), ``squaring`` (no host synchronisation) or ``subspace``.
        check_finite: raise :class:`NonFiniteActivationError` when any activation is NaN or
            infinite. With False the flag is returned in ``finite`` and those maps are NaN.

    Returns:
        A :class:`Decomposition` (projections (B, k, h, w), ratios (B, k), sigmas (B, k)).
    """
    if not isinstance(activations, Tensor):
        raise TypeError(f"activations must be a torch.Tensor, got {type(activations).__name__}")
    if activations.ndim != 4:
        raise ShapeError(
            "activations",
            "(B, C, h, w)",
            tuple(activations.shape),
            "Token outputs (B, N, C) need a reshape_transform, e.g. eigencam.tokens_to_grid.",
        )
    if not activations.is_floating_point():
        raise TypeError(f"activations must be floating point, got {activations.dtype}")
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(SOLVERS)}; got {solver!r}")
    batch, channels, h, w = activations.shape
    n = h * w
    rank = min(n, channels)
    if not isinstance(n_components, int) or isinstance(n_components, bool) or n_components < 1:
        raise ValueError(f"n_components must be a positive integer, got {n_components!r}")
    if n_components > rank:
        raise ValueError(
            f"n_components={n_components} but activations of shape {tuple(activations.shape)} "
            f"have at most min(h*w, C) = {rank} principal components; use n_components <= {rank}"
        )
    k = n_components
    out_dtype = torch.float64 if activations.dtype == torch.float64 else torch.float32

    x = activations.reshape(batch, channels, n).to(torch.float64)  # x = O^T, (B, C, n)
    mean_map = x.mean(dim=1)  # (B, n): the channel-mean activation map
    scale = x.square().sum(dim=(1, 2)).sqrt()  # ||O||_F before centering
    finite = torch.isfinite(scale)
    if check_finite and not bool(finite.all()):
        bad = (~finite).nonzero().flatten().tolist()
        raise NonFiniteActivationError(
            f"activations contain NaN or infinity (images {bad} of the batch); "
            "check the input for NaN and the model for overflow (fp16 models: try float32)"
        )
    if center:
        x = x - x.mean(dim=2, keepdim=True)
    # Keep non-finite images from breaking the solver for the whole batch.
    x = torch.where(finite[:, None, None], x, torch.zeros((), dtype=x.dtype, device=x.device))
    total = x.square().sum(dim=(1, 2))  # ||O||_F^2 = trace of either Gram matrix

    if solver == "auto":
        solver = choose_solver(x.device, rank)
    if solver == "svd":
        u, s, _ = torch.linalg.svd(x.mT, full_matrices=False)  # O = U S V^T
        sigma = s[:, :k]
        proj = (u[:, :, :k] * sigma[:, None, :]).mT  # (B, k, n)
    elif channels <= n:
        values, v = top_k_eigenpairs(x @ x.mT, k, solver)  # C x C: O^T O = V S^2 V^T
        sigma = values.clamp_min(0.0).sqrt()
        proj = v.mT @ x  # (O V)^T
    else:
        values, u = top_k_eigenpairs(x.mT @ x, k, solver)  # n x n: O O^T = U S^2 U^T
        sigma = values.clamp_min(0.0).sqrt()
        proj = (u * sigma[:, None, :]).mT  # (U S)^T = (O V)^T

    negligible = sigma <= _RELATIVE_ZERO * scale[:, None]
    proj = torch.where(
        negligible[:, :, None], torch.zeros((), dtype=proj.dtype, device=proj.device), proj
    )
    sigma = torch.where(negligible, torch.zeros((), dtype=sigma.dtype, device=sigma.device), sigma)
    proj = proj * _orientation(proj, mean_map)[:, :, None]

    ratio = torch.where(total[:, None] > 0, sigma.square() / total[:, None].clamp_min(1e-300), 0.0)
    if not check_finite:
        nan = torch.full((), float("nan"), dtype=proj.dtype, device=proj.device)
        proj = torch.where(finite[:, None, None], proj, nan)
        ratio = torch.where(finite[:, None], ratio, nan)
    return Decomposition(
        projections=proj.reshape(batch, k, h, w).to(out_dtype),
        explained_variance_ratio=ratio.to(torch.float32),
        singular_values=sigma.to(torch.float32),
        finite=finite,
    )


def _orientation(proj: Tensor, mean_map: Tensor) -> Tensor:
    """Signs (B, k) that give each map a positive correlation with the channel-mean map."""
    p = proj - proj.mean(dim=-1, keepdim=True)
    a = (mean_map - mean_map.mean(dim=-1, keepdim=True))[:, None, :]
    score = (p * a).sum(-1)
    for tie_break in ((proj * mean_map[:, None, :]).sum(-1), proj.sum(-1)):
        score = torch.where(score == 0, tie_break, score)
    return torch.where(score < 0, -1.0, 1.0).to(proj.dtype)
