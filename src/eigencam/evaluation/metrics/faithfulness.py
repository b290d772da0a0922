r"""Faithfulness metrics: pure, batched functions over precomputed maps.

Every function takes the model, the normalised input batch (B, 3, H, W), the maps (B, H, W) at
the input resolution (higher = more relevant), the class to score per image (B,), and the
normalisation (mean, std): images are edited in [0, 1] pixel space and re-normalised before
scoring. Scores are softmax probabilities of the target class; model calls are batched
(``batch_size``) under ``torch.inference_mode`` with the model in eval mode (flags restored).

- Deletion / insertion (Petsiuk et al., RISE, BMVC 2018): the area under the probability curve
  as pixels are removed from / revealed on a baseline, most relevant first (deletion: lower is
  better; insertion: higher is better).
- Average drop and increase in confidence (Chattopadhyay et al., Grad-CAM++, WACV 2018), the
  image multiplied by its map: :math:`\text{drop} = \max(0, Y - O) / Y`, :math:`\text{increase}
  = [O > Y]` (drop: lower is better, increase: higher is better).
- ROAD (Rong et al., ICML 2022): a fraction of the pixels, most (MoRF) or least (LeRF) relevant
  first, replaced by noisy linear imputation (:func:`noisy_linear_impute`), so the removal leaks
  no shape information. MoRF: lower is better; LeRF: higher is better.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from eigencam.capture.hooks import preserved_state
from eigencam.errors import ShapeError, check_choice, check_range
from eigencam.methods.targets import logits_of
from eigencam.postprocess.maps import gaussian_kernel1d


@dataclass(frozen=True)
class Curve:
    """Probability of the target class along a removal/insertion schedule.

    Attributes:
        fractions: (S,) fraction of pixels removed, revealed or imputed at each point.
        probs: (B, S) target-class probabilities.
        auc: (B,) trapezoidal area under ``probs`` over ``fractions`` (normalised by the span).
    """

    fractions: Tensor
    probs: Tensor
    auc: Tensor


def _check(images: Tensor, maps: Tensor, targets: Tensor) -> Tensor:
    if images.ndim != 4:
        raise ShapeError("images", "(B, C, H, W)", tuple(images.shape))
    if maps.ndim == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.shape != (images.shape[0], *images.shape[-2:]):
        raise ShapeError(
            "maps",
            f"(B, H, W) = {(images.shape[0], *images.shape[-2:])}",
            tuple(maps.shape),
            "Pass maps at the input resolution, e.g. result.maps[:, 0].",
        )
    if targets.shape != (images.shape[0],):
        raise ShapeError("targets", f"(B,) = ({images.shape[0]},)", tuple(targets.shape))
    return maps


def _stats(mean: Sequence[float], std: Sequence[float], like: Tensor) -> tuple[Tensor, Tensor]:
    m = torch.as_tensor(mean, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)
    return m, s


def class_probs(model: nn.Module, inputs: Tensor, targets: Tensor, batch_size: int = 64) -> Tensor:
    """Softmax probability of ``targets`` (N,) for inputs (N, C, H, W), in chunks."""
    out = []
    with torch.inference_mode(), preserved_state(model):
        for i in range(0, inputs.shape[0], batch_size):
            logits = logits_of(model(inputs[i : i + batch_size]))
            out.append(logits.float().softmax(1).gather(1, targets[i : i + batch_size, None])[:, 0])
    return torch.cat(out)


def _trapezoid(y: Tensor, x: Tensor) -> Tensor:
    span = (x[-1] - x[0]).clamp_min(1e-12)
    return torch.trapezoid(y, x.to(y.dtype), dim=-1) / span


def _rank_order(maps: Tensor) -> Tensor:
    """(B, H*W) rank of each pixel, 0 = most relevant; ties broken by position (stable)."""
    flat = maps.flatten(1).float()
    order = torch.sort(-flat, dim=1, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order))
    return ranks


def blur(images: Tensor, sigma: float) -> Tensor:
    """Gaussian blur of a batch (reflect padding), kernel radius 3 sigma."""
    radius = max(1, round(3 * sigma))
    k = gaussian_kernel1d(sigma, radius, dtype=images.dtype, device=images.device)
    c = images.shape[1]
    x = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def deletion_insertion(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    targets: Tensor,
    *,
    mode: str = "deletion",
    steps: int = 20,
    baseline: str = "constant",
    mean: Sequence[float] = (0.0, 0.0, 0.0),
    std: Sequence[float] = (1.0, 1.0, 1.0),
    constant: float = 0.0,
    blur_sigma: float | None = None,
    batch_size: int = 64,
) -> Curve:
    """Deletion or insertion curve and AUC.

    Args:
        model, images, maps, targets: see the module docstring.
        mode: ``deletion`` (remove the most relevant pixels first, replacing them by the
            baseline) or ``insertion`` (reveal them first on top of the baseline).
        steps: number of equal steps from 0 to all pixels (steps + 1 points).
        baseline: ``constant`` (pixel value ``constant`` in [0, 1] pixel space, 0 = black) or
            ``blur`` (the Gaussian-blurred image, sigma ``blur_sigma``, default 5% of the side).
        mean, std: the model's normalisation, to edit pixels in [0, 1] space.
        batch_size: model inputs per forward pass.

    Returns:
        :class:`Curve` with (steps + 1) points.
    """
    maps = _check(images, maps, targets)
    check_choice("mode", mode, ("deletion", "insertion"))
    check_choice("baseline", baseline, ("constant", "blur"))
    check_range("steps", steps, 1)
    m, s = _stats(mean, std, images)
    pixels = images * s + m
    if baseline == "constant":
        base = torch.full_like(pixels, float(constant))
    else:
        sigma = blur_sigma if blur_sigma is not None else 0.05 * max(images.shape[-2:])
        base = blur(pixels, sigma)
    b, _, h, w = images.shape
    ranks = _rank_order(maps).view(b, 1, h, w)
    counts = torch.linspace(0, h * w, steps + 1, device=images.device).round().long()
    fractions = counts.float() / (h * w)
    start, end = (pixels, base) if mode == "deletion" else (base, pixels)
    probs = []
    for count in counts.tolist():
        edited = torch.where(ranks < count, end, start)  # the `count` most relevant pixels
        probs.append(class_probs(model, (edited - m) / s, targets, batch_size))
    probs_t = torch.stack(probs, dim=1)
    return Curve(fractions.cpu(), probs_t.cpu(), _trapezoid(probs_t, fractions).cpu())


def average_drop_increase(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    targets: Tensor,
    *,
    mean: Sequence[float] = (0.0, 0.0, 0.0),
    std: Sequence[float] = (1.0, 1.0, 1.0),
    batch_size: int = 64,
) -> tuple[Tensor, Tensor]:
    """Per-image drop ``max(0, Y - O) / Y`` and increase ``O > Y`` (B,), image masked by its map.

    Maps are expected in [0, 1] (as explainers return them). Average ``drop`` and the mean of
    ``increase`` times 100 are the paper's "average drop %" and "increase in confidence %".
    """
    maps = _check(images, maps, targets)
    m, s = _stats(mean, std, images)
    masked = ((images * s + m) * maps[:, None].clamp(0, 1) - m) / s
    y = class_probs(model, images, targets, batch_size)
    o = class_probs(model, masked, targets, batch_size)
    drop = (y - o).clamp_min(0) / y.clamp_min(1e-12)
    return drop.cpu(), (o > y).cpu()


# (dy, dx, weight) of the 8 neighbours in ROAD's imputation.
_NEIGHBOURS = [(dy, dx, 1 / 6) for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))] + [
    (dy, dx, 1 / 12) for dy, dx in ((-1, -1), (-1, 1), (1, -1), (1, 1))
]


def noisy_linear_impute(
    image: np.ndarray,
    removed: np.ndarray,
    *,
    noise: float = 0.01,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """ROAD's noisy linear imputation of one image.

    Args:
        image: (C, H, W) float pixels in [0, 1].
        removed: (H, W) bool, pixels to replace.
        noise: standard deviation of the Gaussian noise added to imputed pixels.
        rng: random generator (seeded by the caller for reproducibility).

    Returns:
        (C, H, W) image where each removed pixel is the weighted mean of its 8 neighbours (1/6
        for the 4 direct, 1/12 for the 4 diagonal ones; solved jointly as a sparse linear
        system) plus noise.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import splu

    c, h, w = image.shape
    ids = np.full((h, w), -1, dtype=np.int64)
    ry, rx = np.nonzero(removed)
    n = ry.size
    if n == 0:
        return image.copy()
    ids[ry, rx] = np.arange(n)
    rows, cols, vals = [], [], []
    diag = np.zeros(n)
    rhs = np.zeros((n, c))
    for dy, dx, wgt in _NEIGHBOURS:
        ny, nx = ry + dy, rx + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        src = np.nonzero(inside)[0]
        ny, nx = ny[inside], nx[inside]
        diag[src] += wgt
        neighbour = ids[ny, nx]
        unknown = neighbour >= 0
        rows.append(src[unknown])
        cols.append(neighbour[unknown])
        vals.append(np.full(unknown.sum(), -wgt))
        known = ~unknown
        rhs[src[known]] += wgt * image[:, ny[known], nx[known]].T
    rows.append(np.arange(n))
    cols.append(np.arange(n))
    vals.append(diag)
    a = coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    ).tocsc()
    solution = splu(a).solve(rhs)
    rng = rng if rng is not None else np.random.default_rng(0)
    solution = solution + rng.normal(0.0, noise, size=solution.shape)
    out = image.copy()
    out[:, ry, rx] = solution.T
    return out


def road(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    targets: Tensor,
    *,
    fractions: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9),
    order: str = "morf",
    mean: Sequence[float] = (0.0, 0.0, 0.0),
    std: Sequence[float] = (1.0, 1.0, 1.0),
    noise: float = 0.01,
    seed: int = 0,
    batch_size: int = 64,
) -> Curve:
    """ROAD curve: class probability after imputing the given fractions of pixels.

    Args:
        order: ``morf`` (most relevant first; lower is better) or ``lerf`` (least relevant first;
            higher is better).
        fractions: fractions of pixels removed.
        noise, seed: imputation noise and its seed (the same seed for every method, so methods
            are compared on the same noise).

    Returns:
        :class:`Curve` over ``fractions``; ``auc`` is the mean probability over the fractions
        normalised like an area.
    """
    maps = _check(images, maps, targets)
    check_choice("order", order, ("morf", "lerf"))
    m, s = _stats(mean, std, images)
    pixels = (images * s + m).detach().cpu().double().numpy()
    b, _, h, w = images.shape
    ranks = _rank_order(maps if order == "morf" else -maps).view(b, h, w).cpu().numpy()
    edited = np.empty((len(fractions), *pixels.shape))
    for i in range(b):
        rng = np.random.default_rng(seed + i)
        for j, frac in enumerate(fractions):
            removed = ranks[i] < round(frac * h * w)
            edited[j, i] = noisy_linear_impute(pixels[i], removed, noise=noise, rng=rng)
    stacked = torch.from_numpy(edited).to(images.device, images.dtype).flatten(0, 1)
    probs = class_probs(model, (stacked - m) / s, targets.repeat(len(fractions)), batch_size)
    probs_t = probs.view(len(fractions), b).T
    fr = torch.tensor(list(fractions), dtype=torch.float32)
    return Curve(fr, probs_t.cpu(), probs_t.mean(1).cpu())
