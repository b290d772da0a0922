"""Where a feature map lies on the input when the model resizes and pads it internally.

torchvision's detectors start with a ``GeneralizedRCNNTransform``: each image of the
(B, 3, H, W) input is resized to (Hr, Wr) and the batch zero-padded at the bottom and right to
(Hp, Wp). A feature map (h, w) covers (Hp, Wp), not the input: upsampling it straight to (H, W)
would stretch the padding into the picture. :func:`recording_geometry` records the padded and
valid sizes during one call; :func:`crop_to_input` keeps the cells over the valid region and
returns the *extent* of the kept grid relative to the input::

    stride_y = Hp / h,  h_kept = ceil(Hr / stride_y),  extent_y = h_kept * stride_y / Hr >= 1

(upsample the kept grid to ``extent * (H, W)`` and crop (H, W):
:func:`eigencam.postprocess.maps.upsample` with ``extent=``). The padding never enters the
decomposition.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from eigencam.errors import ShapeError

# Modules whose output is (ImageList(tensors, image_sizes), targets): the resize + pad step.
_RESIZE_PAD_TYPES = ("GeneralizedRCNNTransform",)


@dataclass(frozen=True)
class InputGeometry:
    """(H, W) of the model's input, (Hp, Wp) of the padded batch its backbone saw, (Hr, Wr) of
    the resized input inside it (top-left aligned)."""

    input: tuple[int, int]
    padded: tuple[int, int]
    valid: tuple[int, int]


class GeometryRecorder:
    """What :func:`recording_geometry` found during the forward pass (None: no resize step)."""

    def __init__(self) -> None:
        self.padded: tuple[int, int] | None = None
        self.sizes: list[tuple[int, int]] = []

    def geometry(self, inputs: Tensor) -> InputGeometry | None:
        if self.padded is None or not self.sizes:
            return None
        if len(set(self.sizes)) != 1:
            raise ShapeError(
                "resized images inside the model",
                "one size for the whole batch",
                str(sorted(set(self.sizes))),
                "Give the model a (B, 3, H, W) tensor, not a list of images of several sizes.",
            )
        size = (int(inputs.shape[-2]), int(inputs.shape[-1]))
        return InputGeometry(input=size, padded=self.padded, valid=self.sizes[0])


@contextmanager
def recording_geometry(model: nn.Module) -> Iterator[GeometryRecorder]:
    """Record the padded and valid image sizes of the model's first resize-and-pad step (a hook
    for the block only; models without such a step record nothing)."""
    recorder = GeometryRecorder()

    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        images = output[0] if isinstance(output, (tuple, list)) and output else output
        tensors = getattr(images, "tensors", None)
        sizes = getattr(images, "image_sizes", None)
        if recorder.padded is None and isinstance(tensors, Tensor) and sizes is not None:
            recorder.padded = (int(tensors.shape[-2]), int(tensors.shape[-1]))
            recorder.sizes = [(int(h), int(w)) for h, w in sizes]

    step = next((m for m in model.modules() if type(m).__name__ in _RESIZE_PAD_TYPES), None)
    with nullcontext() if step is None else step.register_forward_hook(hook):
        yield recorder


def crop_to_input(
    activations: Tensor, geometry: InputGeometry | None
) -> tuple[Tensor, tuple[float, float] | None]:
    """Keep the feature cells (B, C, h, w) over the valid image region.

    Returns:
        (activations (B, C, h_kept, w_kept), extent (ey, ex) >= 1, or None when the grid covers
        the input exactly or ``geometry`` is None).
    """
    if geometry is None:
        return activations, None
    h, w = activations.shape[-2:]
    (hp, wp), (hr, wr) = geometry.padded, geometry.valid
    stride_y, stride_x = hp / h, wp / w
    # 1e-6: a valid size that is an exact multiple of the stride keeps exactly that many cells.
    keep_h = min(h, max(1, math.ceil(hr / stride_y - 1e-6)))
    keep_w = min(w, max(1, math.ceil(wr / stride_x - 1e-6)))
    extent = (keep_h * stride_y / hr, keep_w * stride_x / wr)
    cropped = activations[..., :keep_h, :keep_w]
    if abs(extent[0] - 1) < 1e-6 and abs(extent[1] - 1) < 1e-6:
        return cropped, None
    return cropped, extent
