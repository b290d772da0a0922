r"""The Eigen-CAM maths (Muhammad & Yeasin, IJCNN 2020, Section III), batched.

For one image, a layer's activations form :math:`O \in \mathbb{R}^{n \times C}` (a row per
position, :math:`n = h w`). With the thin SVD :math:`O = U \Sigma V^T` the map is the
projection on the first right singular vector, reshaped to (h, w):

.. math::  L_{\text{Eigen-CAM}} = O V_1 = \sigma_1 U_1 .

Component i is :math:`O V_i`, explaining :math:`\sigma_i^2 / \lVert O \rVert_F^2` of the
variance; ``center=True`` subtracts the per-channel mean first (PCA, as pytorch-grad-cam).

How: :math:`\sigma_i^2, V_i` are the top eigenpairs of the C x C Gram matrix :math:`O^T O`
(:math:`U_i` those of the n x n :math:`O O^T`); we build the smaller one in float64 for the
whole batch, converting the activations a cache-sized chunk at a time (a float64 copy of the
layer would double the memory and, on a CPU, cost more than the product itself).

Sign rule: each component is oriented so that its map correlates positively (Pearson) with the
channel-mean map :math:`\bar a = O \mathbf{1} / C`; ties (e.g. a 1 x 1 map) are broken by the
uncentered inner product with :math:`\bar a`, then by the map's sum, then +1. It depends only on
the image's own activations: the same sign on every device, dtype and batch, invariant to
permuting channels and to positive scaling (LAPACK's own sign varies with all of these).

A component whose singular value is below 1e-9 of :math:`\lVert O \rVert_F` (all-zero or,
centered, constant activations) is an exact zero map with zero explained variance, never NaN.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from eigencam.decomposition.solvers import SOLVERS, choose_solver, top_k_eigenpairs
from eigencam.errors import NonFiniteActivationError, ShapeError, check, check_choice

_RELATIVE_ZERO = 1e-9
_TOKENS_HINT = "Token outputs (B, N, C) need a reshape_transform, e.g. eigencam.tokens_to_grid."


class Decomposition(NamedTuple):
    """Result of :func:`eigen_cam`.

    Attributes:
        projections: (B, k, h, w), the maps :math:`O V_i` oriented by the sign rule, in the
            activations' dtype (float32 for half precision).
        explained_variance_ratio, singular_values: (B, k) float32.
        finite: (B,) bool, False where the activations held NaN or infinity (with
            ``check_finite=False``; otherwise such input raises).
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
    check(
        isinstance(activations, Tensor),
        f"activations must be a torch.Tensor, got {type(activations).__name__}",
    )
    if activations.ndim != 4:
        raise ShapeError("activations", "(B, C, h, w)", tuple(activations.shape), _TOKENS_HINT)
    check(
        activations.is_floating_point(),
        f"activations must be floating point, got {activations.dtype}",
    )
    check_choice("solver", solver, SOLVERS)
    batch, channels, h, w = activations.shape
    n = h * w
    rank = min(n, channels)
    check(
        isinstance(n_components, int) and not isinstance(n_components, bool) and n_components >= 1,
        f"n_components must be a positive integer, got {n_components!r}",
    )
    check(
        n_components <= rank,
        f"n_components={n_components} but activations of shape {tuple(activations.shape)} "
        f"have at most min(h*w, C) = {rank} principal components; use n_components <= {rank}",
    )
    k = n_components
    out_dtype = torch.float64 if activations.dtype == torch.float64 else torch.float32

    x = activations.reshape(batch, channels, n)  # x = O^T, (B, C, n), never copied whole
    by_position = channels <= n  # the Gram side: C x C (chunks of positions) or n x n
    step = _chunk_length(x, by_position)
    mean = _channel_means(x, step) if center else None  # (B, C, 1) float64
    gram, mean_map = _gram(x, mean, by_position, step)
    total = torch.diagonal(gram, dim1=-2, dim2=-1).sum(-1)  # ||O||_F^2 (after centering)
    norm2 = total if mean is None else total + n * mean.square().sum(dim=(1, 2))
    scale = norm2.sqrt()  # ||O||_F before centering
    finite = torch.isfinite(scale)
    if check_finite and not bool(finite.all()):
        bad = (~finite).nonzero().flatten().tolist()
        raise NonFiniteActivationError(
            f"activations contain NaN or infinity (images {bad} of the batch); "
            "check the input for NaN and the model for overflow (fp16 models: try float32)"
        )
    # Keep non-finite images from breaking the solver for the whole batch.
    zero = torch.zeros((), dtype=gram.dtype, device=gram.device)
    gram = torch.where(finite[:, None, None], gram, zero)
    total = torch.where(finite, total, zero)

    if solver == "auto":
        solver = choose_solver(x.device, rank, k)
    if solver == "svd":
        xc = x.to(torch.float64) if mean is None else x.to(torch.float64) - mean
        xc = torch.where(finite[:, None, None], xc, zero)
        u, s, _ = torch.linalg.svd(xc.mT, full_matrices=False)  # O = U S V^T
        sigma = s[:, :k]
        proj = (u[:, :, :k] * sigma[:, None, :]).mT  # (B, k, n)
    elif by_position:
        values, v = top_k_eigenpairs(gram, k, solver)  # C x C: O^T O = V S^2 V^T
        sigma = values.clamp_min(0.0).sqrt()
        proj = _project(x, mean, v, step)  # (O V)^T
    else:
        values, u = top_k_eigenpairs(gram, k, solver)  # n x n: O O^T = U S^2 U^T
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


# Float64 elements per chunk of the activations converted at a time: large enough that the
# matrix products run at full speed, small enough that the float64 copy of a whole layer (2x the
# float32 activations) is never made. 8 MiB on CPU stays in cache; on GPU one chunk usually
# covers the layer (fewer kernels).
_CHUNK_ELEMENTS = {"cpu": 1 << 20, "cuda": 1 << 22}


def _chunk_length(x: Tensor, by_position: bool) -> int:
    """Positions (``by_position``) or channels per chunk of x (B, C, n)."""
    batch, channels, n = x.shape
    budget = _CHUNK_ELEMENTS.get(x.device.type, _CHUNK_ELEMENTS["cuda"])
    per_unit = batch * (channels if by_position else n)
    total = n if by_position else channels
    return max(1, min(total, budget // max(1, per_unit)))


def _channel_means(x: Tensor, step: int) -> Tensor:
    """Per-channel spatial means (B, C, 1) in float64, summed in chunks of positions."""
    batch, channels, n = x.shape
    sums = x.new_zeros(batch, channels, dtype=torch.float64)
    for start in range(0, n, step):
        sums += x[:, :, start : start + step].to(torch.float64).sum(-1)
    return (sums / n)[:, :, None]


def _gram(x: Tensor, mean: Tensor | None, by_position: bool, step: int) -> tuple[Tensor, Tensor]:
    """The float64 Gram matrix of x (B, C, n), centred by ``mean``, and the channel-mean map.

    ``by_position``: G = x x^T (C x C), accumulated over chunks of positions; otherwise
    G = x^T x (n x n), over chunks of channels. The channel-mean map (B, n) is of the
    uncentered activations (the sign rule's reference).
    """
    batch, channels, n = x.shape
    side = channels if by_position else n
    gram = x.new_zeros(batch, side, side, dtype=torch.float64)
    channel_sum = x.new_zeros(batch, n, dtype=torch.float64)
    for start in range(0, n if by_position else channels, step):
        cut = slice(start, start + step)
        if by_position:
            chunk = x[:, :, cut].to(torch.float64)
            channel_sum[:, cut] = chunk.sum(1)
            if mean is not None:
                chunk = chunk - mean
            gram.baddbmm_(chunk, chunk.mT)
        else:
            chunk = x[:, cut, :].to(torch.float64)
            channel_sum += chunk.sum(1)
            if mean is not None:
                chunk = chunk - mean[:, cut]
            gram.baddbmm_(chunk.mT, chunk)
    return gram, channel_sum / channels


def _project(x: Tensor, mean: Tensor | None, v: Tensor, step: int) -> Tensor:
    """(B, k, n) float64 projections v^T (x - mean) over chunks of positions."""
    batch, _, n = x.shape
    vt = v.mT.contiguous()
    out = x.new_empty(batch, v.shape[-1], n, dtype=torch.float64)
    for start in range(0, n, step):
        cut = slice(start, start + step)
        chunk = x[:, :, cut].to(torch.float64)
        if mean is not None:
            chunk = chunk - mean
        out[:, :, cut] = vt @ chunk
    return out


def _orientation(proj: Tensor, mean_map: Tensor) -> Tensor:
    """Signs (B, k) that give each map a positive correlation with the channel-mean map."""
    p = proj - proj.mean(dim=-1, keepdim=True)
    a = (mean_map - mean_map.mean(dim=-1, keepdim=True))[:, None, :]
    score = (p * a).sum(-1)
    for tie_break in ((proj * mean_map[:, None, :]).sum(-1), proj.sum(-1)):
        score = torch.where(score == 0, tie_break, score)
    return torch.where(score < 0, -1.0, 1.0).to(proj.dtype)
