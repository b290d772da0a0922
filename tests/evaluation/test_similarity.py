"""Map similarities against hand-computed cases and scikit-image's SSIM; the baselines, the
summary statistics, the run folders and the stratified subsets of the per-image benchmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from eigencam.evaluation.datasets import Dataset, Sample, stratified
from eigencam.evaluation.metrics.baselines import center_gaussian, random_maps
from eigencam.evaluation.metrics.similarity import (
    gaussian_window,
    mask_iou,
    pearson,
    ssim,
    top_fraction_mask,
    top_region_iou,
)
from eigencam.evaluation.metrics.stats import describe, paired_difference, rate


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# -- Pearson --------------------------------------------------------------------------------
def test_pearson_hand_computed():
    a = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    b = torch.tensor([[[2.0, 1.0], [4.0, 3.0]]])
    # centred: a = (-1.5, -0.5, 0.5, 1.5), b = (-0.5, -1.5, 1.5, 0.5): sum ab = 3, |a|^2 = 5
    assert pearson(a, b).item() == pytest.approx(0.6)
    assert pearson(a, a).item() == pytest.approx(1.0)
    assert pearson(a, 1 - a).item() == pytest.approx(-1.0)
    assert pearson(a, 3 * a + 2).item() == pytest.approx(1.0)  # invariant to scale and offset


def test_pearson_of_a_constant_map_is_undefined():
    a = rand(2, 8, 8)
    b = a.clone()
    b[1] = 0.5
    r = pearson(a, b)
    assert r[0].item() == pytest.approx(1.0) and torch.isnan(r[1])


def test_pearson_matches_numpy_and_accepts_channel_dim():
    a, b = rand(3, 1, 9, 7, seed=1), rand(3, 1, 9, 7, seed=2)
    expected = [np.corrcoef(a[i].flatten(), b[i].flatten())[0, 1] for i in range(3)]
    np.testing.assert_allclose(pearson(a, b).numpy(), expected, rtol=1e-10)


# -- SSIM -----------------------------------------------------------------------------------
def test_ssim_of_identical_maps_is_one():
    a = rand(2, 20, 24)
    torch.testing.assert_close(ssim(a, a), torch.ones(2, dtype=torch.float64))


def test_ssim_of_constant_maps_in_closed_form():
    # Constant maps have no variance: SSIM = (2 c1 c2 + C1) / (c1^2 + c2^2 + C1) everywhere.
    c1, c2 = 0.2, 0.7
    a = torch.full((1, 16, 16), c1)
    b = torch.full((1, 16, 16), c2)
    big_c1 = (0.01 * 1.0) ** 2
    expected = (2 * c1 * c2 + big_c1) / (c1**2 + c2**2 + big_c1)
    assert ssim(a, b).item() == pytest.approx(expected, rel=1e-6)


def test_ssim_equals_scikit_image():
    skm = pytest.importorskip("skimage.metrics")
    a = rand(3, 40, 52, seed=3)
    b = (a + 0.4 * rand(3, 40, 52, seed=4)).clamp(0, 1)
    b[2] = 1 - a[2]  # an inverted map
    ours = ssim(a, b).numpy()
    ref = [
        skm.structural_similarity(
            a[i].double().numpy(),
            b[i].double().numpy(),
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        for i in range(3)
    ]
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)
    assert ours[2] < 0 < ours[0]


def test_ssim_batch_of_one_equals_batch_of_n_and_is_symmetric():
    a, b = rand(4, 16, 16, seed=5), rand(4, 16, 16, seed=6)
    full = ssim(a, b)
    singles = torch.cat([ssim(a[i : i + 1], b[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(full, singles)
    torch.testing.assert_close(full, ssim(b, a))


def test_gaussian_window_sums_to_one_and_peaks_in_the_middle():
    w = gaussian_window(1.5, 11)
    assert w.shape == (11,) and w.sum().item() == pytest.approx(1.0)
    assert int(w.argmax()) == 5 and w[4] == w[6]
    with pytest.raises(ValueError, match="odd"):
        gaussian_window(1.5, 10)


def test_similarity_errors_name_the_problem():
    with pytest.raises(ValueError, match="same shape"):
        ssim(rand(2, 16, 16), rand(2, 16, 15))
    with pytest.raises(ValueError, match="SSIM window"):
        ssim(rand(1, 8, 8), rand(1, 8, 8))
    with pytest.raises(TypeError, match="torch tensors"):
        pearson(np.zeros((1, 4, 4)), torch.zeros(1, 4, 4))


# -- top regions ----------------------------------------------------------------------------
def test_top_fraction_is_the_highest_values():
    m = torch.arange(100.0).view(1, 10, 10) / 99
    mask = top_fraction_mask(m, 0.15)
    assert mask.sum().item() == 15
    assert mask.view(-1)[85:].all() and not mask.view(-1)[:85].any()


def test_top_fraction_keeps_a_plateau_whole_and_stops_at_the_floor():
    m = torch.zeros(3, 10, 10)
    m[0, :3, :] = 1.0  # plateau of 30% at the top: kept whole, not cut at 15%
    m[1, 0, :5] = 1.0  # support of 5%: the region is the support
    # m[2] constant: empty region
    mask = top_fraction_mask(m, 0.15)
    assert mask.sum((1, 2)).tolist() == [30, 5, 0]


def test_top_region_iou_hand_computed():
    a = torch.zeros(1, 10, 10)
    b = torch.zeros(1, 10, 10)
    a[0, 0, :] = 1.0  # row 0
    a[0, 1, :5] = 1.0  # + half of row 1: 15 pixels
    b[0, 1, :] = 1.0  # row 1
    b[0, 0, :5] = 1.0  # + half of row 0: 15 pixels
    # intersection: 5 + 5 = 10, union: 15 + 15 - 10 = 20
    assert top_region_iou(a, b, 0.15).item() == pytest.approx(0.5)
    assert top_region_iou(a, a, 0.15).item() == 1.0


def test_mask_iou_of_two_empty_masks_is_undefined():
    e = torch.zeros(2, 4, 4, dtype=torch.bool)
    f = e.clone()
    f[1, 0, 0] = True
    iou = mask_iou(e, f)
    assert torch.isnan(iou[0]) and iou[1].item() == 0.0


# -- baselines -------------------------------------------------------------------------------
def test_random_maps_depend_on_the_key_not_the_batch():
    both = random_maps(["a.jpg", "b.jpg"], (6, 7), seed=3)
    alone = random_maps(["b.jpg"], (6, 7), seed=3)
    torch.testing.assert_close(both[1], alone[0])
    assert not torch.equal(both[0], both[1])
    assert not torch.equal(alone, random_maps(["b.jpg"], (6, 7), seed=4))
    assert float(both.min()) >= 0 and float(both.max()) < 1


def test_center_gaussian_formula():
    m = center_gaussian(2, (20, 10), sigma=0.25)
    assert m.shape == (2, 20, 10) and torch.equal(m[0], m[1])
    y, x = 3, 8  # pixel centres at (y + 0.5, x + 0.5); image centre (10, 5)
    expected = np.exp(-0.5 * (((y + 0.5 - 10) / 5) ** 2 + ((x + 0.5 - 5) / 2.5) ** 2))
    assert m[0, y, x].item() == pytest.approx(expected, rel=1e-6)
    assert torch.equal(m[0], m[0].flip(0)) and torch.equal(m[0], m[0].flip(1))


# -- statistics ------------------------------------------------------------------------------
def test_describe_and_rate():
    d = describe([1.0, 2.0, 3.0, 4.0, np.nan])
    assert d["n"] == 4 and d["undefined"] == 1 and d["median"] == 2.5
    assert (d["q25"], d["q75"], d["iqr"], d["mean"]) == (1.75, 3.25, 1.5, 2.5)
    assert describe([np.nan])["median"] is None
    assert rate([True, False, True, True]) == {"n": 4, "count": 3, "rate": 0.75}
    assert rate([])["rate"] is None


def test_paired_difference():
    a = np.array([0.9, 0.8, 0.95, 0.7, np.nan])
    b = np.array([0.5, 0.6, 0.9, 0.75, 0.1])
    d = paired_difference(a, b)
    assert d["n"] == 4 and d["a_greater"] == 0.75
    assert d["median_difference"] == pytest.approx(np.median([0.4, 0.2, 0.05, -0.05]))
    lo, hi = d["ci95"]
    assert lo <= d["median_difference"] <= hi
    assert 0 < d["wilcoxon_p"] <= 1
    assert paired_difference(a, a)["wilcoxon_p"] is None  # every difference is zero
    with pytest.raises(ValueError, match="one value per image"):
        paired_difference([1.0], [1.0, 2.0])


# -- stratified subsets ----------------------------------------------------------------------
def _dataset(labels):
    samples = [
        Sample(f"{i:03d}.jpg", Path(f"{i:03d}.jpg"), np.zeros((1, 4)), lab, None, "ann")
        for i, lab in enumerate(labels)
    ]
    return Dataset(root=Path("."), format="dev", samples=samples)


def test_stratified_subset_is_seeded_balanced_and_ordered():
    ds = _dataset([0] * 10 + [1] * 3 + [2] * 7 + [None] * 4)
    sub = stratified(ds, 2, seed=1)
    labels = [s.label for s in sub.samples]
    assert sorted(labels, key=str) == sorted([0, 0, 1, 1, 2, 2, None, None], key=str)
    keys = [s.key for s in sub.samples]
    assert keys == sorted(keys)  # dataset order kept
    assert keys == [s.key for s in stratified(ds, 2, seed=1).samples]
    assert keys != [s.key for s in stratified(ds, 2, seed=2).samples]
    assert len(stratified(ds, 5).samples) == 5 + 3 + 5 + 4
    with pytest.raises(ValueError, match="per_class"):
        stratified(ds, 0)
