"""Where a feature map lies on the input when the model resizes and pads it internally.

torchvision's detectors (Faster R-CNN, RetinaNet, FCOS, SSD, Mask R-CNN...) start with a
``GeneralizedRCNNTransform``: each image of the (B, 3, H, W) input is resized (H, W) -> (Hr, Wr)
and the batch is zero-padded at the bottom and right to (Hp, Wp), a multiple of 32. A feature
map of size (h, w) computed from that padded batch covers (Hp, Wp), not the input: upsampling it
straight to (H, W) would stretch the padding into the picture and shift every object.

:func:`recording_geometry` records, with a forward hook that lives for one call, the padded and
valid sizes the transform produced; :func:`crop_to_input` keeps the feature cells that overlap
the valid region and returns the *extent* of the kept grid relative to the input::

    stride_y = Hp / h,  h_kept = ceil(Hr / stride_y),  extent_y = h_kept * stride_y / Hr >= 1

so the kept (h_kept, w_kept) grid covers ``extent_y * H`` by ``extent_x * W`` input pixels from
the top-left corner: upsample it to that size and crop (H, W)
(:func:`eigencam.postprocess.maps.upsample` with ``extent=``). The padding cells never enter the
decomposition.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from eigencam.errors import ShapeError

# Modules whose output is (ImageList(tensors, image_sizes), targets): the resize + pad step.
_RESIZE_PAD_TYPES = ("GeneralizedRCNNTransform",)


@dataclass(frozen=True)
class InputGeometry:
    """How the model laid the input out before its backbone.

    Attributes:
        input: (H, W) of the tensor given to the model.
        padded: (Hp, Wp) of the batch tensor the backbone saw.
        valid: (Hr, Wr) of the resized input inside it (top-left aligned).
    """

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
        return InputGeometry(
            input=(int(inputs.shape[-2]), int(inputs.shape[-1])),
            padded=self.padded,
            valid=self.sizes[0],
        )


def resize_pad_modules(model: nn.Module) -> list[nn.Module]:
    """The model's internal resize-and-pad modules (torchvision detectors' ``transform``)."""
    return [m for m in model.modules() if type(m).__name__ in _RESIZE_PAD_TYPES]


@contextmanager
def recording_geometry(model: nn.Module) -> Iterator[GeometryRecorder]:
    """Record the padded and valid image sizes of the model's first resize-and-pad step.

    The hook is removed in ``finally``. Models without such a step record nothing.
    """
    recorder = GeometryRecorder()
    handles = []

    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        images = output[0] if isinstance(output, (tuple, list)) and output else output
        tensors = getattr(images, "tensors", None)
        sizes = getattr(images, "image_sizes", None)
        if recorder.padded is None and isinstance(tensors, Tensor) and sizes is not None:
            recorder.padded = (int(tensors.shape[-2]), int(tensors.shape[-1]))
            recorder.sizes = [(int(h), int(w)) for h, w in sizes]

    try:
        for module in resize_pad_modules(model)[:1]:
            handles.append(module.register_forward_hook(hook))
        yield recorder
    finally:
        for handle in handles:
            handle.remove()


def crop_to_input(
    activations: Tensor, geometry: InputGeometry | None
) -> tuple[Tensor, tuple[float, float] | None]:
    """Keep the feature cells over the valid image region; return them and their extent.

    Args:
        activations: (B, C, h, w) computed from the padded batch.
        geometry: what :func:`recording_geometry` found, or None (nothing to do).

    Returns:
        (activations (B, C, h_kept, w_kept), extent (ey, ex) >= 1 or None when the grid covers
        the input exactly).
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
