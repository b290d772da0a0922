"""A model's input preprocessing: size, resize policy, mean and std."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from eigencam.errors import check, check_choice

if TYPE_CHECKING:
    from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_MODES = ("stretch", "center-crop", "letterbox")


@dataclass(frozen=True)
class Preprocessing:
    """How images become model input.

    Attributes:
        input_size: (H, W) the model sees.
        mean, std: per-channel normalisation of [0, 1] RGB values.
        resize: ``stretch`` resizes the whole image to ``input_size`` (aspect ratio not kept, the
            protocol of the Eigen-CAM paper: the map covers the whole image); ``center-crop``
            resizes the short side to ``input_size / crop_fraction`` and takes the centre crop
            (the usual ImageNet evaluation; the map covers the crop only); ``letterbox``
            resizes the whole image keeping its aspect ratio and pads it, centred, with
            ``fill`` to ``input_size`` (detectors: YOLO's own preprocessing; the map covers
            the whole image and nothing else).
        crop_fraction: for ``center-crop``, the crop's share of the resized short side.
        fill: for ``letterbox``, the padding colour as RGB in [0, 1] (YOLO: 114/255 grey;
            torchvision detectors: their normalisation mean, which is what they pad with).
    """

    input_size: tuple[int, int] = (224, 224)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resize: str = "stretch"
    crop_fraction: float = 0.875
    fill: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __post_init__(self) -> None:
        check_choice("resize", self.resize, RESIZE_MODES)
        size, mean, std, fill = self.input_size, self.mean, self.std, self.fill
        check(
            len(size) == 2 and min(size) >= 1,
            f"input_size must be (H, W) with positive sizes, got {size}",
        )
        check(
            len(mean) == 3 and len(std) == 3,
            f"mean and std need 3 values (RGB), got mean={mean}, std={std}",
        )
        check(min(std) > 0, f"std values must be positive, got {std}")
        crop = self.crop_fraction
        check(0 < crop <= 1, f"crop_fraction must be in (0, 1], got {crop}")
        check(
            len(fill) == 3 and all(0 <= f <= 1 for f in fill),
            f"fill must be 3 values in [0, 1] (RGB), got {fill}",
        )

    def describe(self) -> dict[str, Any]:
        """The JSON-ready settings a run records in its identity: input size, mean, std,
        resize policy and crop fraction (lists, not tuples, as JSON reads them back)."""
        return {
            "input_size": list(self.input_size),
            "mean": list(self.mean),
            "std": list(self.std),
            "resize": self.resize,
            "crop_fraction": self.crop_fraction,
        }

    def with_overrides(
        self,
        input_size: int | Sequence[int] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        resize: str | None = None,
        fill: Sequence[float] | None = None,
    ) -> Preprocessing:
        """A copy with the given fields replaced (None keeps the current value)."""
        if isinstance(input_size, int):
            input_size = (input_size, input_size)
        sizes = None if input_size is None else tuple(int(s) for s in input_size)
        changes = {"input_size": sizes, "resize": resize}
        for name, values in (("mean", mean), ("std", std), ("fill", fill)):
            changes[name] = None if values is None else tuple(float(v) for v in values)
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def box_to_original(self, boxes: Tensor, width: int, height: int) -> Tensor:
        """Boxes (N, 4) (x0, y0, x1, y1) in input pixels, on any device -> float32 CPU boxes in
        pixels of the ``width`` x ``height`` original image, clipped to it."""
        x0, y0, x1, y1 = self.crop_region(width, height)
        th, tw = self.input_size
        b = boxes.detach().float().cpu().reshape(-1, 4).clone()
        b[:, 0::2] = (x0 + b[:, 0::2] * ((x1 - x0) / tw)).clamp(0, width)
        b[:, 1::2] = (y0 + b[:, 1::2] * ((y1 - y0) / th)).clamp(0, height)
        return b

    def letterbox_layout(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(new_width, new_height, pad_left, pad_top) of a ``width`` x ``height`` image."""
        th, tw = self.input_size
        scale = min(tw / width, th / height)
        nw = min(tw, max(1, round(width * scale)))
        nh = min(th, max(1, round(height * scale)))
        return nw, nh, (tw - nw) // 2, (th - nh) // 2

    def crop_region(self, width: int, height: int) -> tuple[float, float, float, float]:
        """The region (x0, y0, x1, y1) of the original image, in its pixels, the model sees.

        For ``letterbox`` the region is larger than the image (negative x0 or y0): the input's
        padding lies outside the image.
        """
        if self.resize == "stretch":
            return (0.0, 0.0, float(width), float(height))
        th, tw = self.input_size
        if self.resize == "letterbox":
            nw, nh, left, top = self.letterbox_layout(width, height)
            sx, sy = width / nw, height / nh
            return (-left * sx, -top * sy, (tw - left) * sx, (th - top) * sy)
        scale = min(th, tw) / self.crop_fraction / min(width, height)
        crop_w, crop_h = tw / scale, th / scale
        x0 = (width - crop_w) / 2
        y0 = (height - crop_h) / 2
        return (x0, y0, x0 + crop_w, y0 + crop_h)

    def resize_image(self, image: Image.Image) -> np.ndarray:
        """Resize (and crop) an RGB PIL image to ``input_size``: uint8 array (H, W, 3).

        Runs in worker threads (Pillow releases the GIL while resampling).
        """
        from PIL import Image

        th, tw = self.input_size
        if self.resize == "stretch":
            out = image.resize((tw, th), Image.Resampling.BILINEAR, reducing_gap=None)
        elif self.resize == "letterbox":
            nw, nh, left, top = self.letterbox_layout(*image.size)
            colour = tuple(round(255 * f) for f in self.fill)
            out = Image.new("RGB", (tw, th), colour)
            out.paste(image.convert("RGB").resize((nw, nh), Image.Resampling.BILINEAR), (left, top))
        else:
            x0, y0, x1, y1 = self.crop_region(*image.size)
            out = image.resize((tw, th), Image.Resampling.BILINEAR, box=(x0, y0, x1, y1))
        return np.asarray(out.convert("RGB"), dtype=np.uint8)

    def normalize_batch(self, pixels: Tensor) -> Tensor:
        """uint8 (B, H, W, 3) -> normalised float32 (B, 3, H, W), on the tensor's device."""
        x = pixels.permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return x.sub_(mean).div_(std)

    def batch(self, images: Sequence[Image.Image], device: str | torch.device = "cpu") -> Tensor:
        """PIL images -> a normalised batch (B, 3, H, W) on ``device``."""
        arrays = np.stack([self.resize_image(img) for img in images])
        return self.normalize_batch(torch.from_numpy(arrays).to(device))
