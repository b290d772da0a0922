"""Post-processing of maps: upsampling, normalisation, blur, and placement on the original image."""

from eigencam.postprocess.maps import (
    gaussian_blur,
    gaussian_kernel1d,
    normalize,
    renormalize_in_boxes,
    upsample,
    upsample_normalize,
)
from eigencam.postprocess.placement import maps_at_original, paste_region

__all__ = [
    "gaussian_blur",
    "gaussian_kernel1d",
    "maps_at_original",
    "normalize",
    "paste_region",
    "renormalize_in_boxes",
    "upsample",
    "upsample_normalize",
]
