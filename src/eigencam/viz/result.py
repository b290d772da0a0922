"""A result's maps placed on the original photo, exactly as ``eigencam explain`` places them.

:meth:`eigencam.CAMResult.overlay` and :meth:`eigencam.CAMResult.save` call these: the map is
pasted over the region of the photo the model saw (:meth:`Preprocessing.crop_region`: the crop
of ``center-crop``, the padding of ``letterbox`` dropped), normalised there, coloured and blended,
so the picture is byte for byte the one the command line writes for the same image and options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from eigencam.errors import InvalidParameterError, check
from eigencam.io.images import load_image
from eigencam.io.png import write_png
from eigencam.postprocess.placement import maps_at_original
from eigencam.viz.overlay import overlay


class _Stretch:
    """The placement of a model that saw the whole photo resized (``resize="stretch"``)."""

    def crop_region(self, width: int, height: int) -> tuple[float, float, float, float]:
        return (0.0, 0.0, float(width), float(height))


def photo_array(image: Any) -> np.ndarray:
    """The photo as uint8 RGB (H, W, 3): a path, a ``PIL.Image`` or such an array."""
    if isinstance(image, (str, Path)):
        image = load_image(image)
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    check(
        arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8,
        f"image must be a path, a PIL image or a uint8 (H, W, 3) RGB array, got "
        f"{type(image).__name__} {getattr(arr, 'shape', '')} {getattr(arr, 'dtype', '')}",
    )
    return arr


def maps_on_photo(result: Any, image: Any, preprocessing: Any = None, index: int = 0) -> np.ndarray:
    """Float32 maps (k, H, W) in [0, 1] over the photo of image ``index`` of the batch.

    Args:
        result: a :class:`~eigencam.CAMResult`.
        image: the original photo (path, ``PIL.Image`` or uint8 RGB array) that was
            preprocessed into ``result``'s input.
        preprocessing: the :class:`~eigencam.models.Preprocessing` that made the input
            (``loaded.preprocessing``); None: the photo was resized whole (``stretch``).
        index: which image of the batch.
    """
    batch = result.raw.shape[0]
    if not 0 <= index < batch:
        raise InvalidParameterError(f"index {index} is not an image of this batch of {batch}")
    photo = photo_array(image)
    relu = bool(result.params.get("relu", False))
    place = _Stretch() if preprocessing is None else preprocessing
    size = (photo.shape[1], photo.shape[0])
    raw = result.raw[index].detach().cpu()
    return maps_at_original(raw, place, size, relu=relu, extent=result.extent)


def overlay_on_photo(
    result: Any,
    image: Any,
    preprocessing: Any = None,
    *,
    index: int = 0,
    component: int = 0,
    alpha: float = 0.5,
    colormap: str = "jet",
) -> np.ndarray:
    """The overlay (H, W, 3) uint8 of map ``component`` on the photo (see :func:`maps_on_photo`);
    ``alpha`` and ``colormap`` as ``eigencam explain --alpha --colormap``."""
    maps = maps_on_photo(result, image, preprocessing, index)
    if not 0 <= component < maps.shape[0]:
        raise InvalidParameterError(
            f"component {component} is not a map of this result: it has {maps.shape[0]}"
        )
    return overlay(photo_array(image), maps[component], alpha=alpha, colormap=colormap)


def save_overlay(result: Any, image: Any, path: str | Path, preprocessing: Any = None, **kw: Any):
    """Write :func:`overlay_on_photo` as a PNG at ``path``; returns the path."""
    return write_png(path, overlay_on_photo(result, image, preprocessing, **kw))
