"""Reshape transforms: turn a layer's output into a (B, C, h, w) map."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from eigencam.errors import ShapeError


@dataclass(frozen=True)
class tokens_to_grid:
    """Token sequences (B, N, C) -> spatial maps (B, C, h, w), prefix tokens dropped.

    Args:
        num_prefix_tokens: tokens before the patch tokens (1 for a ViT class token, 2 for DeiT's
            class + distillation tokens, 0 for Swin-style outputs). None guesses: 0 when N is a
            perfect square (or h * w when ``grid`` is given), otherwise 1.
        grid: (h, w) of the patch grid, for non-square inputs; default: a square grid.
        channels_last: the input is (B, h, w, C) (Swin, ConvNeXt-style blocks) rather than tokens.

    Example:
        >>> EigenCAM(vit, target_layer="encoder.layers.encoder_layer_11",
        ...          reshape_transform=tokens_to_grid(num_prefix_tokens=1))
    """

    num_prefix_tokens: int | None = None
    grid: tuple[int, int] | None = None
    channels_last: bool = False

    def __call__(self, tokens: Tensor) -> Tensor:
        if self.channels_last:
            if tokens.ndim != 4:
                raise ShapeError("channels-last output", "(B, h, w, C)", tuple(tokens.shape))
            return tokens.permute(0, 3, 1, 2)
        if tokens.ndim != 3:
            raise ShapeError(
                "token output",
                "(B, N, C)",
                tuple(tokens.shape),
                "Use tokens_to_grid(channels_last=True) for (B, h, w, C) outputs.",
            )
        batch, n, channels = tokens.shape
        prefix = self.num_prefix_tokens
        if prefix is None:
            if self.grid is not None:
                prefix = n - self.grid[0] * self.grid[1]
            else:
                prefix = 0 if math.isqrt(n) ** 2 == n else 1
        patches = n - prefix
        if self.grid is not None:
            h, w = self.grid
        else:
            h = w = math.isqrt(max(patches, 0))
        if prefix < 0 or h * w != patches or patches <= 0:
            raise ShapeError(
                "token output",
                f"(B, {prefix} + h*w, C) with a square patch grid",
                tuple(tokens.shape),
                "Pass tokens_to_grid(num_prefix_tokens=..., grid=(h, w)) for this model.",
            )
        return tokens[:, prefix:, :].reshape(batch, h, w, channels).permute(0, 3, 1, 2)
