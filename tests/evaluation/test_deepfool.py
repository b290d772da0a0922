"""DeepFool against its closed form on a linear model, and on the embedded model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from eigencam.attacks import deepfool, input_bounds


def linear_model(seed: int = 0, classes: int = 5, dim: int = 12) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(dim, classes))


@pytest.mark.parametrize("seed", range(5))
def test_linear_model_minimal_perturbation_in_closed_form(seed):
    model = linear_model(seed)
    x = torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(seed))
    w, b = model[1].weight.detach(), model[1].bias.detach()
    res = deepfool(model, x, candidates=5, overshoot=0.02)
    assert res.success.all() and (res.iterations == 1).all()
    for i in range(4):
        f = w @ x[i].flatten() + b
        k0 = int(f.argmax())
        others = [k for k in range(5) if k != k0]
        dists = [(f[k] - f[k0]).abs() / (w[k] - w[k0]).norm() for k in others]
        best = others[int(torch.stack(dists).argmin())]
        wl = w[best] - w[k0]
        r = ((f[best] - f[k0]).abs() + 1e-4) / wl.norm() ** 2 * wl
        torch.testing.assert_close(res.perturbation[i].flatten(), 1.02 * r, rtol=1e-4, atol=1e-6)
        # minimal: the distance to the closest linear boundary (+ DeepFool's 1e-4 margin)
        assert float(res.l2[i]) == pytest.approx(
            1.02 * (float(min(dists)) + 1e-4 / float(wl.norm())), rel=1e-4
        )


def test_model_state_and_inputs_untouched():
    model = linear_model()
    model.train()
    x = torch.randn(2, 3, 2, 2)
    before = x.clone()
    deepfool(model, x)
    assert torch.equal(x, before) and model.training
    assert all(p.grad is None for p in model.parameters())


def test_bounds_are_respected():
    model = linear_model(3)
    x = torch.rand(3, 3, 2, 2)
    low, high = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
    res = deepfool(model, x, bounds=(low, high))
    assert float(res.adversarial.min()) >= 0 and float(res.adversarial.max()) <= 1


def test_argument_errors():
    model = linear_model()
    with pytest.raises(ValueError, match="candidates"):
        deepfool(model, torch.rand(1, 3, 2, 2), candidates=1)
    with pytest.raises(ValueError, match="shape"):
        deepfool(model, torch.rand(3, 2, 2))


@pytest.mark.slow
def test_flips_the_embedded_model_with_a_small_perturbation(embedded, sample_images):
    from eigencam.io import load_image

    pre = embedded.preprocessing
    x = pre.batch([load_image(p) for p in sample_images if p.stem in ("cat", "coffee")])
    res = deepfool(
        embedded.model,
        x,
        bounds=input_bounds(pre.mean, pre.std),
        pixel_scale=torch.tensor(pre.std).view(1, 3, 1, 1),
    )
    assert res.success.all(), res.iterations
    assert float(res.rho.max()) < 0.02  # imperceptible: under 2% of the image norm
    assert int(res.iterations.max()) <= 50


def test_batched_candidate_gradients_equal_one_pass_per_candidate(monkeypatch):
    from eigencam.attacks.deepfool import _candidate_gradients

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 7))
    x = torch.randn(3, 3, 8, 8, requires_grad=True)
    f = model(x)[:, [4, 0, 2, 6]]
    batched = _candidate_gradients(f, x)
    loop = torch.stack(
        [torch.autograd.grad(f[:, j].sum(), x, retain_graph=True)[0] for j in range(4)], 1
    )
    torch.testing.assert_close(batched, loop)
    # models without a batching rule for their backward fall back to one pass per candidate
    real_grad = torch.autograd.grad

    def no_vmap(*args, **kwargs):
        if kwargs.get("is_grads_batched"):
            raise RuntimeError("Batching rule not implemented")
        return real_grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", no_vmap)
    torch.testing.assert_close(_candidate_gradients(f, x), loop)


def test_result_carries_both_logits():
    model = linear_model(2)
    x = torch.randn(3, 3, 2, 2)
    res = deepfool(model, x)
    torch.testing.assert_close(res.clean_logits, model(x))
    torch.testing.assert_close(res.adversarial_logits, model(res.adversarial))
    assert torch.equal(res.adversarial_logits.argmax(1), res.adversarial_label)
