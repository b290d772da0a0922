"""Reshape transforms: turn a layer's output (tokens, channels-last maps, feature pyramids) into
a (B, C, h, w) map."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from eigencam.errors import InvalidParameterError, ShapeError

_NHWC_HINT = "Use tokens_to_grid(channels_last=True) for (B, h, w, C) outputs."
_TOKENS_HINT = (
    "The layer outputs tokens (B, N, C): use tokens_to_grid() (CLI: --reshape tokens:0 for no "
    "prefix tokens, as a Swin block's norm2)."
)


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
                hint = _TOKENS_HINT if tokens.ndim == 3 else ""
                raise ShapeError("channels-last output", "(B, h, w, C)", tuple(tokens.shape), hint)
            return tokens.permute(0, 3, 1, 2)
        if tokens.ndim != 3:
            raise ShapeError("token output", "(B, N, C)", tuple(tokens.shape), _NHWC_HINT)
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


def pyramid_levels(features: Any) -> list[tuple[str, Tensor]]:
    """The (name, map) pairs of a multi-level output: a dict, list or tuple of (B, C, h, w)."""
    if isinstance(features, Tensor):
        return [("0", features)]
    if isinstance(features, dict):
        items = [(str(k), v) for k, v in features.items()]
    elif isinstance(features, (list, tuple)):
        items = [(str(i), v) for i, v in enumerate(features)]
    else:
        return []
    return [(k, v) for k, v in items if isinstance(v, Tensor) and v.ndim == 4]


@dataclass(frozen=True)
class FeaturePyramid:
    """Multi-level feature maps (a feature pyramid) -> one (B, sum of C_l, h, w) map.

    Detector backbones return several maps of decreasing resolution (torchvision's FPN: a dict
    ``{"0": (B, 256, H/4, W/4), ..., "pool": ...}``; SSD: six maps). Each level is resized
    (bilinear, ``align_corners=False``) to the grid of the finest level with at most
    ``max_positions`` positions (the coarsest when all are larger), which bounds the cost of
    the decomposition, and the levels are concatenated along channels, so the principal
    component mixes all scales. ``levels``: names (dict keys) or indices of the levels to keep
    (None: all). A single 4-D tensor passes through unchanged.

    Example:
        >>> EigenCAM(fasterrcnn, target_layer="backbone", reshape_transform=FeaturePyramid())
    """

    max_positions: int = 4096
    levels: tuple[str | int, ...] | None = None

    def __call__(self, features: Any) -> Tensor:
        if isinstance(features, Tensor):
            if features.ndim != 4:
                raise ShapeError("feature map", "(B, C, h, w)", tuple(features.shape))
            return features
        levels = pyramid_levels(features)
        if self.levels is not None:
            wanted = {str(k) for k in self.levels}
            levels = [(k, v) for k, v in levels if k in wanted]
        if not levels:
            got = (
                type(features).__name__
                if not isinstance(features, (dict, list, tuple))
                else f"{type(features).__name__} without (B, C, h, w) maps"
                + (f" for levels {list(self.levels)}" if self.levels is not None else "")
            )
            raise ShapeError(
                "feature pyramid",
                "a dict, list or tuple of (B, C, h, w) maps",
                got,
                "Pick a layer that outputs feature maps (see `eigencam layers`).",
            )
        batch = {v.shape[0] for _, v in levels}
        if len(batch) != 1:
            raise ShapeError(
                "feature pyramid",
                "levels with the same batch size",
                str([tuple(v.shape) for _, v in levels]),
            )
        by_size = sorted({tuple(v.shape[-2:]) for _, v in levels}, key=lambda s: -s[0] * s[1])
        fitting = [s for s in by_size if s[0] * s[1] <= self.max_positions]
        size = fitting[0] if fitting else by_size[-1]
        dtype = torch.promote_types(levels[0][1].dtype, torch.float32)
        maps = [
            v
            if tuple(v.shape[-2:]) == size
            else F.interpolate(v.to(dtype), size=size, mode="bilinear", align_corners=False)
            for _, v in levels
        ]
        return torch.cat([m.to(dtype) for m in maps], dim=1)


#: The spellings of ``--reshape`` (:func:`parse_reshape`).
RESHAPES = ("tokens", "tokens:N", "channels-last", "pyramid")


def parse_reshape(value: str | None) -> Any:
    """The reshape transform a ``--reshape`` spec names (``tokens``, ``tokens:N``,
    ``channels-last``, ``pyramid``), or None for None and ``none``."""
    if value is None or value == "none":
        return None
    count = value.removeprefix("tokens:")
    if value == "tokens" or (count != value and count.isdigit()):
        return tokens_to_grid(num_prefix_tokens=None if value == "tokens" else int(count))
    if value == "channels-last":
        return tokens_to_grid(channels_last=True)
    if value == "pyramid":
        return FeaturePyramid()
    raise InvalidParameterError(
        f"--reshape {value!r}: expected one of {', '.join(RESHAPES)} or none"
    )
