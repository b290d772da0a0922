r"""Reference maps that explain nothing, so every faithfulness number has a floor to beat.

They are internal baselines of the evaluation commands, not registered methods: they take no
model and no layer, and the method registry's conformance suite (hooks, gradients, targets)
does not apply to them.

- :func:`random_maps`: i.i.d. uniform pixel values, seeded per image (by its key), so a map
  does not depend on the batch an image falls in and a resumed run draws the same maps.
  Removing pixels in a random order is the chance level of deletion / insertion / ROAD.
- :func:`center_gaussian`: :math:`m(y, x) = \exp\big(-\tfrac12 [(y - c_y)^2 / (s H)^2 +
  (x - c_x)^2 / (s W)^2]\big)` with the centre :math:`c` of the image and :math:`s` = 0.25 by
  default: the photographer's bias (objects tend to be centred), which a map must beat to show
  it uses the image.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import Tensor

from eigencam.errors import check

BASELINES = ("random", "center_gaussian")


def key_seed(key: str, seed: int) -> int:
    """A 63-bit seed from an image key and a run seed (stable across runs and platforms)."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def random_maps(
    keys: Sequence[str],
    size: tuple[int, int],
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> Tensor:
    """Uniform random maps (B, H, W) float32 in [0, 1), one per key, reproducible per key.

    Args:
        keys: one identifier per image (the dataset key); the same key and seed always give the
            same map, whatever the batch.
        size: (H, W).
        seed: run-level seed mixed with each key.
        device: where the maps go.
    """
    h, w = size
    out = torch.empty(len(keys), h, w)
    for i, key in enumerate(keys):  # B draws of H*W numbers: negligible next to a forward pass
        gen = torch.Generator().manual_seed(key_seed(str(key), seed))
        out[i] = torch.rand(h, w, generator=gen)
    return out.to(device)


def center_gaussian(
    batch: int,
    size: tuple[int, int],
    *,
    sigma: float = 0.25,
    device: str | torch.device = "cpu",
) -> Tensor:
    """The centred Gaussian map (B, H, W) float32 in (0, 1], peak 1 at the centre.

    Args:
        batch: B.
        size: (H, W).
        sigma: standard deviation as a fraction of each side.
        device: where the maps go.
    """
    check(sigma > 0, f"sigma must be > 0 (a fraction of the side), got {sigma}")
    h, w = size
    y = (torch.arange(h, dtype=torch.float32, device=device) + 0.5 - h / 2) / (sigma * h)
    x = (torch.arange(w, dtype=torch.float32, device=device) + 0.5 - w / 2) / (sigma * w)
    m = torch.exp(-0.5 * (y[:, None] ** 2 + x[None, :] ** 2))
    return m.expand(batch, h, w).clone()
