"""Top-k eigenpairs of batched symmetric positive semi-definite (Gram) matrices.

Every solver takes ``gram`` (B, m, m) float64 and returns ``values`` (B, k), descending, and
``vectors`` (B, m, k), orthonormal columns. All are exact to float64 round-off on eigencam's
matrices (``tests/decomposition`` checks each against a float64 SVD); they differ in speed and
in host synchronisation:

- ``eigh``: LAPACK / cuSOLVER, the reference; on CUDA it reads an error flag back to the host.
- ``squaring``: repeated squaring of the normalised Gram matrix, then Rayleigh refinement and
  deflation: matrix products only, no host synchronisation (keeps a GPU pipeline full).
- ``subspace``: block subspace iteration with Rayleigh-Ritz and a Davis-Kahan stopping rule
  (products with thin (m x 9) blocks, no full tridiagonalisation); matrices that have not
  converged fall back to ``eigh``, so speed never costs accuracy.
"""

from __future__ import annotations

import torch
from torch import Tensor

from eigencam.errors import InvalidParameterError

SOLVERS = ("auto", "eigh", "svd", "squaring", "subspace")


def eigh_top_k(gram: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-k eigenpairs with ``torch.linalg.eigh`` (values descending)."""
    values, vectors = torch.linalg.eigh(gram)
    values = values[..., -k:].flip(-1)
    vectors = vectors[..., -k:].flip(-1)
    return values, vectors


def squaring_top_k(
    gram: Tensor, k: int, squarings: int = 32, refine: int = 2, renorm_every: int = 6
) -> tuple[Tensor, Tensor]:
    """Top-k eigenpairs by repeated squaring, without host synchronisation.

    For a PSD G with eigenvalues l1 >= l2 >= ..., t squarings ``P <- P @ P`` of ``G / tr(G)``
    shrink the share of every other eigenvector by (l_i / l1)^(2^t): with t = 32, below float64
    resolution whenever l2 / l1 < 1 - 1e-8 (closer eigenvalues leave v1 undefined anyway). The
    column of P with the largest diagonal is proportional to v1; products with G refine it, and
    it is deflated before the next component. P is renormalised by its trace only every
    ``renorm_every`` squarings (kernel launches are what costs on a GPU): after one l1 >= 1/m,
    so it stays above m^(-2^renorm_every) (1e-173 for m = 512), and no eigenvalue exceeds 1.
    """
    batch, m, _ = gram.shape
    g = gram
    values = gram.new_zeros(batch, k)
    vectors = gram.new_zeros(batch, m, k)
    tiny = torch.finfo(gram.dtype).tiny

    def renormalised(p: Tensor) -> Tensor:
        trace = torch.diagonal(p, dim1=-2, dim2=-1).sum(-1).clamp_min(tiny)
        return p / trace[:, None, None]

    for i in range(k):
        p = renormalised(g)
        for step in range(1, squarings + 1):
            p = torch.bmm(p, p)
            if step % renorm_every == 0 or step == squarings:
                p = renormalised(p)
        diag = torch.diagonal(p, dim1=-2, dim2=-1)
        col = diag.argmax(-1)
        v = torch.take_along_dim(p, col[:, None, None], dim=-1)  # (B, m, 1)
        for _ in range(refine):
            v = torch.bmm(g, v)
            v = v / v.norm(dim=1, keepdim=True).clamp_min(tiny)
        lam = (v.mT @ g @ v)[:, 0, 0].clamp_min(0.0)
        values[:, i] = lam
        vectors[:, :, i] = v[:, :, 0]
        if i + 1 < k:
            g = g - lam[:, None, None] * (v @ v.mT)
    return values, vectors


def subspace_top_k(
    gram: Tensor,
    k: int,
    oversample: int = 8,
    max_iter: int = 60,
    tol: float = 1e-9,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Top-k eigenpairs by block subspace iteration, exact by construction.

    Iterates ``Q <- orth(G Q)`` on a block of k + oversample vectors. After each step a
    Rayleigh-Ritz projection gives Ritz pairs; by the Davis-Kahan theorem the angle between the
    i-th Ritz vector and the true eigenvector is at most ``||G v - l v|| / gap_i``. The
    iteration stops when that bound is below ``tol`` for every component of every matrix in the
    batch; matrices that do not get there within ``max_iter`` steps are solved by ``eigh``.
    The starting block comes from a fixed seed, so the result is deterministic.
    """
    batch, m, _ = gram.shape
    width = min(m, k + oversample)
    if width >= m:  # the block spans everything: nothing to gain
        return eigh_top_k(gram, k)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    q = torch.randn(m, width, generator=gen, dtype=gram.dtype).to(gram.device)
    q = q.expand(batch, m, width)
    q = torch.linalg.qr(gram @ q).Q
    converged = torch.zeros(batch, dtype=torch.bool, device=gram.device)
    values = vectors = None
    for _ in range(max_iter):
        z = gram @ q
        t = q.mT @ z
        ritz_vals, ritz_vecs = torch.linalg.eigh(t)
        ritz_vals = ritz_vals.flip(-1)
        ritz_vecs = ritz_vecs.flip(-1)
        v = q @ ritz_vecs[..., :k]
        lam = ritz_vals[..., :k]
        # G v = G Q y = Z y: the residual needs no further product with G.
        resid = (z @ ritz_vecs[..., :k] - v * lam[:, None, :]).norm(dim=1)  # (B, k)
        # Gap to the next Ritz value; the Ritz values converge much faster than the vectors.
        gaps = (lam - ritz_vals[..., 1 : k + 1]).clamp_min(0.0)
        tiny = torch.finfo(gram.dtype).tiny
        converged = (resid / gaps.clamp_min(tiny) <= tol).all(-1)
        values, vectors = lam, v
        if bool(converged.all()):
            break
        q = torch.linalg.qr(z).Q
    if values is None or vectors is None:  # max_iter == 0
        return eigh_top_k(gram, k)
    if not bool(converged.all()):
        idx = (~converged).nonzero().flatten()
        ev, evec = eigh_top_k(gram[idx], k)
        values = values.clone()
        vectors = vectors.clone()
        values[idx] = ev
        vectors[idx] = evec
    return values, vectors


def top_k_eigenpairs(gram: Tensor, k: int, solver: str) -> tuple[Tensor, Tensor]:
    """Dispatch to a named solver (``eigh``, ``squaring`` or ``subspace``)."""
    solve = {"eigh": eigh_top_k, "squaring": squaring_top_k, "subspace": subspace_top_k}
    if solver not in solve:
        raise InvalidParameterError(f"solver must be one of {SOLVERS}, got {solver!r}")
    return solve[solver](gram, k)


def choose_solver(device: torch.device, m: int, k: int = 1) -> str:
    """The solver ``auto`` picks for the top k eigenpairs of an m x m Gram matrix on ``device``.

    Measured by ``benchmarks/bench_solvers.py`` (docs/benchmarks.md): on CPU ``eigh`` wins for
    small m, subspace iteration from m = 128 (192 for several components); on CUDA the
    synchronisation-free ``squaring`` keeps the pipeline full until m^3 work dominates.
    """
    if device.type == "cuda":
        return "squaring" if m <= 512 else "eigh"
    return "subspace" if m >= (128 if k == 1 else 192) else "eigh"
