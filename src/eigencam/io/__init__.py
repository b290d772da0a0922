"""Input and output: reading images, expanding inputs, writing results (and PNGs) atomically."""

from eigencam.io.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    EncodedImage,
    decode_image,
    expand_inputs,
    load_image,
)
from eigencam.io.outputs import UniqueStems, atomic_write, write_json, write_npy
from eigencam.io.png import encode_png, write_png

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "EncodedImage",
    "UniqueStems",
    "atomic_write",
    "decode_image",
    "encode_png",
    "expand_inputs",
    "load_image",
    "write_json",
    "write_npy",
    "write_png",
]
