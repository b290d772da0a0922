"""Reading images safely, and expanding files / folders / globs into a list of images."""

from __future__ import annotations

import glob
import io
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from eigencam.errors import ImageReadError, InvalidParameterError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
# Pillow's own default limit (about 89.5 megapixels); larger images may be decompression bombs.
DEFAULT_MAX_PIXELS = 89_478_485


class EncodedImage(NamedTuple):
    """An image still encoded in memory (a Parquet cell, a tar member), with a name for errors.

    Attributes:
        name: what error messages call it (an id, ``shard.tar#key``...).
        data: the encoded bytes (JPEG, PNG...).
    """

    name: str
    data: bytes


def load_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS):
    """Open an image as 8-bit RGB, upright (EXIF orientation applied).

    Grayscale, palette, 16-bit and CMYK images are converted; transparent images are composited
    on white. The pixel count is checked from the header before decoding.

    Args:
        path: image file (JPEG, PNG, WebP, BMP, TIFF, GIF: anything Pillow reads).
        max_pixels: refuse images with more pixels than this (None: no limit).

    Returns:
        A ``PIL.Image.Image`` in mode RGB.

    Raises:
        ImageReadError: missing, unreadable, corrupt or too large, naming the file and cause.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(path, "no such file")
    if path.is_dir():
        raise ImageReadError(path, "is a directory, not an image")
    return _open_rgb(path, path, max_pixels)


def decode_image(data: bytes, name: str = "<bytes>", max_pixels: int | None = DEFAULT_MAX_PIXELS):
    """Decode an image held in memory exactly as :func:`load_image` reads a file.

    Args:
        data: the encoded image (the bytes of a JPEG, PNG... file).
        name: what error messages call it.
        max_pixels: refuse images with more pixels than this (None: no limit).

    Returns:
        A ``PIL.Image.Image`` in mode RGB, upright.

    Raises:
        ImageReadError: empty, corrupt, not an image, or too large.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidParameterError(f"data must be bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise ImageReadError(name, "empty image data (0 bytes)")
    return _open_rgb(io.BytesIO(data), name, max_pixels)


def _open_rgb(source, name, max_pixels: int | None):
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(source)
            width, height = image.size
            if max_pixels is not None and width * height > max_pixels:
                raise ImageReadError(
                    name,
                    f"image is {width} x {height} = {width * height:,} pixels, above the limit of "
                    f"{max_pixels:,} (decompression-bomb protection); raise it with --max-pixels "
                    "if you trust this file",
                )
            image.load()
    except ImageReadError:
        raise
    except Image.DecompressionBombError as err:
        raise ImageReadError(name, f"refused as a possible decompression bomb ({err})") from err
    except UnidentifiedImageError as err:
        raise ImageReadError(name, "not an image, or a format Pillow cannot read") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(name, f"corrupt or truncated image data ({err})") from err
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block must not lose the image
        pass
    return to_rgb(image)


def to_rgb(image):
    """Any Pillow image -> RGB (16-bit and float scaled, alpha composited on white)."""
    from PIL import Image

    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") else max(float(arr.max()), 1e-12)
        lo = 0.0 if mode.startswith("I;16") else min(float(arr.min()), 0.0)
        arr = np.clip((arr - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def expand_inputs(items: Iterable[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand files, folders (recursively, image extensions only) and glob patterns.

    Returns:
        (image paths in a stable order without duplicates, [(item, reason)] for items that
        matched nothing). Explicit file paths are kept even if missing or of another
        extension: reading them reports the precise error.
    """
    paths: list[Path] = []
    seen: set[Path] = set()
    unmatched: list[tuple[str, str]] = []

    def add(p: Path) -> None:
        key = p.resolve() if p.exists() else p
        if key not in seen:
            seen.add(key)
            paths.append(p)

    for item in items:
        text = str(item)
        p = Path(text)
        if p.is_dir():
            found = sorted(
                f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
            )
            if not found:
                unmatched.append(
                    (text, "folder holds no images (" + ", ".join(IMAGE_EXTENSIONS) + ")")
                )
            for f in found:
                add(f)
        elif any(ch in text for ch in "*?[") and not p.exists():
            found = sorted(Path(f) for f in glob.glob(text, recursive=True) if Path(f).is_file())
            if not found:
                unmatched.append((text, "pattern matched no files"))
            for f in found:
                add(f)
        else:
            add(p)
    return paths, unmatched
