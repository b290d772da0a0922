"""Reading images safely, and expanding files / folders / globs into a list of images."""

from __future__ import annotations

import contextlib
import errno
import glob
import io
import os
import stat
import threading
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from eigencam.errors import ImageReadError, InvalidParameterError, check_range

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
# Pillow's own default limit (about 89.5 megapixels); larger images may be decompression bombs.
DEFAULT_MAX_PIXELS = 89_478_485
_PILLOW_LIMIT = threading.Lock()  # guards Pillow's global limit while eigencam opens an image
_OS_REASONS = {
    errno.ENOENT: "no such file",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ELOOP: "symlink loop (too many levels of symbolic links)",
}


class EncodedImage(NamedTuple):
    """An image still encoded in memory (a Parquet cell, a tar member): its ``data`` (the bytes
    of a JPEG, PNG... file) and the ``name`` error messages call it (``shard.tar#key``...)."""

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
    try:  # non-blocking: opening a FIFO must not wait for a writer
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as err:
        raise ImageReadError(path, os_reason(err)) from err
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "is a directory" if stat.S_ISDIR(mode) else "not a regular file (a FIFO, device...)"
        raise ImageReadError(path, f"{kind}, not an image")
    with os.fdopen(fd, "rb") as file:
        return _open_rgb(file, path, max_pixels)


def os_reason(err: OSError) -> str:
    """What an ``OSError`` says about a file, in words (``permission denied``...)."""
    return _OS_REASONS.get(err.errno, err.strerror or str(err))


def decode_image(data: bytes, name: str = "<bytes>", max_pixels: int | None = DEFAULT_MAX_PIXELS):
    """Decode the bytes of an image file exactly as :func:`load_image` reads the file (``name``
    is what error messages call it).

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

    if max_pixels is not None:
        check_range("max_pixels", max_pixels, 1)
    try:
        with _PILLOW_LIMIT:  # max_pixels is the only guard: Pillow's is off while it opens
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                image = Image.open(source)
            finally:
                Image.MAX_IMAGE_PIXELS = saved
        width, height = image.size
        if max_pixels is not None and width * height > max_pixels:
            raise ImageReadError(
                name,
                f"image is {width} x {height} = {width * height:,} pixels, above the limit of "
                f"{max_pixels:,} (decompression-bomb protection); raise it with --max-pixels "
                "if you trust this file",
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
    except ImageReadError:
        raise
    except UnidentifiedImageError as err:
        raise ImageReadError(name, "not an image, or a format Pillow cannot read") from err
    except Image.DecompressionBombError as err:  # Pillow's guard, outside eigencam's open
        raise ImageReadError(name, f"refused as a possible decompression bomb ({err})") from err
    except OSError as err:
        if err.errno is None:  # Pillow's own: truncated data, a broken decoder
            raise ImageReadError(name, f"corrupt or truncated image data ({err})") from err
        raise ImageReadError(name, f"cannot read the file: {os_reason(err)}") from err
    except (SyntaxError, ValueError) as err:
        raise ImageReadError(name, f"corrupt or truncated image data ({err})") from err
    with contextlib.suppress(Exception):  # a broken EXIF block must not lose the image
        image = ImageOps.exif_transpose(image)
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

    Folders reached through symbolic links are followed; a folder reached twice (a link loop,
    two links to one folder) is expanded once.

    Returns:
        (image paths in a stable order without duplicates, [(item, reason)] for items that
        matched nothing and folders that cannot be read). Explicit file paths are kept even if
        missing or of another extension: reading them reports the precise error.
    """
    paths: dict[Path, Path] = {}  # the resolved path (of an existing file) -> the path given
    unmatched: list[tuple[str, str]] = []
    for item in items:
        text = str(item)
        p = Path(text)
        found: list[Path] = []
        if p.is_dir():
            unreadable = _walk(p, set(), found)
            unmatched.extend(unreadable)
            if not found and not (unreadable and unreadable[0][0] == text):
                unmatched.append(
                    (text, "folder holds no images (" + ", ".join(IMAGE_EXTENSIONS) + ")")
                )
        elif any(ch in text for ch in "*?[") and not p.exists():
            found = [Path(f) for f in glob.glob(text, recursive=True) if Path(f).is_file()]
            if not found:
                unmatched.append((text, "pattern matched no files"))
        else:
            found = [p]
        for f in sorted(found):
            paths.setdefault(f.resolve() if f.exists() else f, f)
    return list(paths.values()), unmatched


def _walk(folder: Path, visited: set[tuple[int, int]], found: list[Path]) -> list[tuple[str, str]]:
    """Add the images under ``folder`` to ``found``, following links to folders once each;
    returns [(folder, reason)] for the folders that cannot be read."""
    try:
        info = os.stat(folder)
        if (info.st_dev, info.st_ino) in visited:
            return []
        visited.add((info.st_dev, info.st_ino))
        with os.scandir(folder) as listing:
            entries = list(listing)
    except OSError as err:
        return [(str(folder), f"cannot read folder: {os_reason(err)}")]
    unreadable = []
    for entry in entries:
        if entry.is_dir():  # follows symbolic links
            unreadable += _walk(Path(entry.path), visited, found)
        elif entry.is_file() and os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
            found.append(Path(entry.path))
    return unreadable
