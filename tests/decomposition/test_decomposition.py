"""The Eigen-CAM maths against values computed independently (numpy float64 SVD, closed forms)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eigencam import eigen_cam
from eigencam.decomposition.solvers import choose_solver
from eigencam.errors import NonFiniteActivationError, ShapeError

SOLVERS = ["eigh", "svd", "squaring", "subspace", "auto"]


def reference(acts: torch.Tensor, k: int, center: bool) -> tuple[np.ndarray, np.ndarray]:
    """Independent numpy float64 computation: O V_i, and sigma_i^2 / ||O||_F^2, per image."""
    a = acts.double().numpy()
    b, c, h, w = a.shape
    maps = np.zeros((b, k, h * w))
    ratios = np.zeros((b, k))
    for i in range(b):
        o = a[i].reshape(c, h * w).T
        if center:
            o = o - o.mean(axis=0)
        _, s, vt = np.linalg.svd(o, full_matrices=True)
        for j in range(k):
            maps[i, j] = o @ vt[j]
        ratios[i] = s[:k] ** 2 / max((o**2).sum(), 1e-300)
    return maps.reshape(b, k, h, w), ratios


def corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("k", [1, 2, 3])
# The last two are large enough (Gram side >= 128) for ``auto`` to pick subspace iteration.
@pytest.mark.parametrize(
    "shape", [(3, 64, 7, 7), (2, 16, 12, 10), (2, 40, 5, 5), (2, 150, 14, 14), (2, 200, 15, 15)]
)
def test_matches_float64_svd(solver, center, k, shape):
    gen = torch.Generator().manual_seed(hash((shape, k)) % 2**31)
    # Activations with a decaying spectrum, as real layers have, plus ReLU sparsity.
    b, c, h, w = shape
    basis = torch.randn(b, h * w, 6, generator=gen) @ torch.diag(
        torch.tensor([8.0, 4, 2, 1, 0.5, 0.25])
    )
    mix = torch.randn(b, 6, c, generator=gen)
    acts = torch.relu(basis @ mix + 0.3 * torch.randn(b, h * w, c, generator=gen))
    acts = acts.transpose(1, 2).reshape(b, c, h, w).float()
    ref_maps, ref_ratio = reference(acts, k, center)
    dec = eigen_cam(acts, k, center=center, solver=solver)
    assert dec.projections.shape == (b, k, h, w)
    assert dec.projections.dtype == torch.float32
    for i in range(b):
        for j in range(k):
            got = dec.projections[i, j].double().numpy()
            # Same up to sign (the reference has LAPACK's sign), and the same magnitude.
            assert abs(corr(got, ref_maps[i, j])) >= 0.9999
            np.testing.assert_allclose(
                np.abs(got),
                np.abs(ref_maps[i, j]),
                rtol=1e-4,
                atol=1e-4 * np.abs(ref_maps[i, j]).max(),
            )
    np.testing.assert_allclose(
        dec.explained_variance_ratio.numpy(), ref_ratio, rtol=1e-5, atol=1e-7
    )


@pytest.mark.parametrize("solver", SOLVERS)
def test_rank_one_activation_gives_its_spatial_factor(solver):
    """A = u v^T (spatial factor u >= 0, channel loadings v >= 0): the map is exactly u ||v||."""
    gen = torch.Generator().manual_seed(0)
    u = torch.rand(9 * 11, generator=gen, dtype=torch.float64)
    v = torch.rand(32, generator=gen, dtype=torch.float64)
    acts = (u[:, None] * v[None, :]).T.reshape(1, 32, 9, 11)
    dec = eigen_cam(acts, 1, solver=solver)
    expected = (u * v.norm()).reshape(9, 11)
    torch.testing.assert_close(dec.projections[0, 0], expected, rtol=1e-9, atol=1e-12)
    assert dec.explained_variance_ratio[0, 0].item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("center", [False, True])
def test_blob_in_every_channel_is_highlighted_never_inverted(center):
    """A bright blob shared by all channels over noise: the map peaks on it, for 200 seeds."""
    yy, xx = torch.meshgrid(torch.arange(14.0), torch.arange(14.0), indexing="ij")
    for seed in range(200):
        gen = torch.Generator().manual_seed(seed)
        cy, cx = torch.randint(3, 11, (2,), generator=gen).tolist()
        blob = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 6.0)
        gains = torch.rand(48, generator=gen) + 0.2
        noise = 0.3 * torch.rand(48, 14, 14, generator=gen)
        acts = (gains[:, None, None] * blob + noise)[None]
        dec = eigen_cam(acts, 1, center=center)
        m = dec.projections[0, 0]
        peak = divmod(int(m.argmax()), 14)
        assert abs(peak[0] - cy) <= 1 and abs(peak[1] - cx) <= 1, seed
        assert corr(m.numpy(), blob.numpy()) > 0.9, seed


def test_sign_is_invariant_to_channel_permutation_scaling_and_batch():
    gen = torch.Generator().manual_seed(3)
    acts = torch.randn(6, 32, 8, 8, generator=gen)  # signed, so LAPACK's sign is arbitrary
    base = eigen_cam(acts, 2).projections
    perm = torch.randperm(32, generator=gen)
    torch.testing.assert_close(eigen_cam(acts[:, perm], 2).projections, base, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(
        eigen_cam(acts * 7.5, 2).projections, base * 7.5, rtol=1e-4, atol=1e-4
    )
    for i in range(6):
        alone = eigen_cam(acts[i : i + 1], 2).projections
        torch.testing.assert_close(alone[0], base[i], rtol=1e-4, atol=1e-5)
    mixed = eigen_cam(torch.cat([acts[3:], acts[:3]]), 2).projections
    torch.testing.assert_close(mixed, torch.cat([base[3:], base[:3]]), rtol=1e-4, atol=1e-5)


def test_sign_correlates_positively_with_channel_mean_map():
    gen = torch.Generator().manual_seed(11)
    for _ in range(50):
        acts = torch.randn(4, 16, 6, 6, generator=gen) + torch.rand(4, 16, 1, 1, generator=gen)
        proj = eigen_cam(acts, 3, center=True).projections
        mean_map = acts.mean(1).flatten(1)
        for i in range(4):
            for j in range(3):
                assert corr(proj[i, j].numpy(), mean_map[i].numpy()) >= 0


@pytest.mark.parametrize("solver", SOLVERS)
def test_solvers_agree_with_each_other_on_signs(solver):
    acts = torch.randn(5, 24, 7, 7, generator=torch.Generator().manual_seed(5))
    ref = eigen_cam(acts, 3, solver="svd").projections
    torch.testing.assert_close(
        eigen_cam(acts, 3, solver=solver).projections, ref, rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_upcast(dtype):
    acts = torch.relu(torch.randn(2, 32, 7, 7, generator=torch.Generator().manual_seed(1)))
    low = acts.to(dtype)
    dec = eigen_cam(low, 1)
    assert dec.projections.dtype == torch.float32
    ref = eigen_cam(low.float(), 1).projections
    torch.testing.assert_close(dec.projections, ref)


def test_float64_stays_float64():
    acts = torch.rand(1, 4, 3, 3, dtype=torch.float64)
    assert eigen_cam(acts).projections.dtype == torch.float64


@pytest.mark.parametrize("center", [False, True])
def test_all_zero_activations_give_zero_map_not_nan(center):
    dec = eigen_cam(torch.zeros(2, 8, 5, 5), 2, center=center)
    assert torch.equal(dec.projections, torch.zeros(2, 2, 5, 5))
    assert torch.equal(dec.explained_variance_ratio, torch.zeros(2, 2))


def test_constant_activations():
    acts = torch.ones(1, 8, 5, 5) * torch.arange(1.0, 9.0)[None, :, None, None]
    centered = eigen_cam(acts, 1, center=True)
    assert torch.equal(centered.projections, torch.zeros(1, 1, 5, 5))
    plain = eigen_cam(acts, 1)
    assert torch.isfinite(plain.projections).all()
    assert plain.projections.std() < 1e-5 * plain.projections.abs().max()  # constant map
    from eigencam.postprocess.maps import upsample_normalize

    assert torch.equal(upsample_normalize(plain.projections, (20, 20)), torch.zeros(1, 1, 20, 20))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_activations_raise_typed_error(bad):
    acts = torch.rand(3, 4, 5, 5)
    acts[1, 2, 3, 3] = bad
    with pytest.raises(NonFiniteActivationError, match=r"images \[1\]"):
        eigen_cam(acts)
    dec = eigen_cam(acts, check_finite=False)
    assert dec.finite.tolist() == [True, False, True]
    assert torch.isnan(dec.projections[1]).all() and torch.isfinite(dec.projections[[0, 2]]).all()


def test_single_position_map():
    acts = torch.tensor([[[[2.0]], [[3.0]]], [[[-1.0]], [[-2.0]]]])  # (2, 2, 1, 1)
    dec = eigen_cam(acts, 1)
    # O is 1 x C: the map is +-||O||, oriented like the channel mean.
    assert dec.projections[:, 0, 0, 0].tolist() == pytest.approx([13**0.5, -(5**0.5)])
    with pytest.raises(ValueError, match="at most min"):
        eigen_cam(acts, 2)


def test_single_channel_map_is_the_channel():
    acts = torch.rand(3, 1, 6, 4)
    dec = eigen_cam(acts, 1)
    torch.testing.assert_close(dec.projections, acts)
    assert dec.explained_variance_ratio.flatten().tolist() == pytest.approx([1.0] * 3)


def test_batch_of_one_equals_batch_member():
    acts = torch.randn(4, 10, 6, 6)
    torch.testing.assert_close(
        eigen_cam(acts[2:3], 2).projections[0],
        eigen_cam(acts, 2).projections[2],
        rtol=1e-4,
        atol=1e-5,
    )


def test_argument_errors():
    with pytest.raises(ShapeError, match=r"expected shape \(B, C, h, w\).*reshape_transform"):
        eigen_cam(torch.rand(2, 10, 8))
    with pytest.raises(TypeError, match="floating"):
        eigen_cam(torch.ones(1, 2, 3, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="positive integer"):
        eigen_cam(torch.rand(1, 2, 3, 3), 0)
    with pytest.raises(ValueError, match="solver"):
        eigen_cam(torch.rand(1, 2, 3, 3), solver="magic")
    with pytest.raises(TypeError, match="torch.Tensor"):
        eigen_cam(np.ones((1, 2, 3, 3)))


def test_input_not_mutated():
    acts = torch.randn(2, 8, 4, 4)
    before = acts.clone()
    eigen_cam(acts, 2, center=True)
    assert torch.equal(acts, before)


@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("shape", [(3, 12, 9, 7), (2, 70, 4, 5)])  # C x C and n x n Gram sides
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_chunked_float64_passes_equal_one_pass(monkeypatch, center, shape, dtype):
    """Large layers are converted to float64 a chunk at a time; chunking must not change the
    result (the budget is lowered here so that every pass runs over several chunks, with a
    ragged last one), also for non-contiguous (channels-last) activations and float64 input."""
    from eigencam.decomposition import projection as module

    gen = torch.Generator().manual_seed(3)
    acts = torch.relu(torch.randn(shape, generator=gen) + 0.3).to(dtype)
    acts = acts.contiguous(memory_format=torch.channels_last)
    before = acts.clone()
    whole = eigen_cam(acts, 3, center=center, solver="eigh")
    monkeypatch.setitem(module._CHUNK_ELEMENTS, "cpu", 2 * shape[0] * 5)
    flat = acts.reshape(shape[0], shape[1], -1)
    assert module._chunk_length(flat, shape[1] <= flat.shape[-1]) < 12
    for solver in ("eigh", "subspace", "svd"):
        parts = eigen_cam(acts, 3, center=center, solver=solver)
        torch.testing.assert_close(parts.projections, whole.projections, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(parts.explained_variance_ratio, whole.explained_variance_ratio)
    ref_maps, _ = reference(acts.float(), 3, center)
    for i in range(shape[0]):
        for j in range(3):
            assert abs(corr(parts.projections[i, j].double().numpy(), ref_maps[i, j])) > 0.9999
    assert torch.equal(acts, before)
    bad = acts.clone()
    bad[1, 5, 2, 3] = float("nan")
    dec = eigen_cam(bad, 2, center=center, check_finite=False)
    assert dec.finite.tolist() == [i != 1 for i in range(shape[0])]
    torch.testing.assert_close(dec.projections[0], whole.projections[0, :2], rtol=1e-6, atol=1e-6)


def test_auto_takes_subspace_iteration_for_large_gram_matrices_on_cpu():
    cpu = torch.device("cpu")
    assert choose_solver(cpu, 100) == "eigh"
    assert choose_solver(cpu, 150) == "subspace"
    assert choose_solver(cpu, 150, k=3) == "eigh"
    assert choose_solver(cpu, 256, k=3) == "subspace"
    assert choose_solver(torch.device("cuda"), 256) == "squaring"
