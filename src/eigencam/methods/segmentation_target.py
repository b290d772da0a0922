"""A class target for semantic segmentation, for the class-specific methods.

Class methods (Grad-CAM and the others) explain a score per image. For a segmenter that score is
the evidence for one class over a region: the sum of that class's logits over the pixels of a
mask. Pass an instance as ``targets=``: it is a callable ``score(output) -> (B,)`` as
:mod:`eigencam.methods.targets` accepts for any model whose output is not classifier logits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from eigencam.errors import TargetError
from eigencam.models.outputs import segmentation_logits


@dataclass(frozen=True)
class SegmentationTarget:
    """Score of a segmentation class inside a mask: ``sum over (y, x) in mask of z[c, y, x]``.

    Args:
        category: the class index c (21 PASCAL VOC classes for torchvision's segmenters: 15 is
            "person").
        mask: (H, W) or (B, H, W) bool / 0-1 float at the output's resolution, the region to
            explain; None uses, for each image, the pixels predicted as ``category`` (argmax of
            the logits), as pytorch-grad-cam's ``SemanticSegmentationTarget`` is usually fed.
        key: the output entry holding the logits when the model returns a dict.

    Example:
        >>> target = SegmentationTarget(15)            # "person", where predicted
        >>> GradCAM(deeplab, "backbone.layer4")(x, targets=target)
    """

    category: int
    mask: Tensor | None = field(default=None, repr=False)
    key: str = "out"

    def __call__(self, output: Any) -> Tensor:
        """(B,) the class logits summed over the mask (differentiable in the logits)."""
        logits = segmentation_logits(output, self.key)
        batch, classes, height, width = logits.shape
        if not isinstance(self.category, int) or isinstance(self.category, bool):
            raise TargetError(f"category must be a class index, got {self.category!r}")
        if not 0 <= self.category < classes:
            raise TargetError(
                f"category {self.category} is not a class of this segmenter: it has {classes} "
                f"classes, indices 0 to {classes - 1}"
            )
        scores = logits[:, self.category]  # (B, H, W)
        if self.mask is None:
            mask = (logits.detach().argmax(dim=1) == self.category).to(scores.dtype)
        else:
            mask = torch.as_tensor(self.mask, device=scores.device)
            if mask.ndim == 2:
                mask = mask.expand(batch, -1, -1)
            if tuple(mask.shape) != (batch, height, width):
                raise TargetError(
                    f"mask must be (H, W) or (B, H, W) = ({batch}, {height}, {width}) at the "
                    f"output's resolution; got {tuple(mask.shape)}"
                )
            mask = mask.to(scores.dtype)
        return (scores * mask).sum(dim=(-2, -1))
