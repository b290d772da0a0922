"""Inputs of every kind for the batch tests, made from the same small images."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TINY = f"{REPO / 'tests' / 'batch_models.py'}:tiny"
SLOW = f"{REPO / 'tests' / 'batch_models.py'}:slow"
# Small inputs: tiny model, 32 px input, 1 torch thread (so every engine computes the same bits).
FAST = {"input_size": (32, 32), "threads": 1, "batch_size": 3}


def image_bytes(k: int, fmt: str = "PNG") -> bytes:
    """A deterministic RGB image of a few dozen pixels with a bright blob at a k-dependent spot."""
    rng = np.random.default_rng(k)
    h, w = 24 + 4 * (k % 5), 30 + 3 * (k % 7)
    arr = (rng.random((h, w, 3)) * 60).astype(np.uint8)
    cy, cx = (k * 7) % (h - 8) + 4, (k * 11) % (w - 8) + 4
    arr[cy - 4 : cy + 4, cx - 4 : cx + 4] = 250
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def make_folder(folder: Path, n: int = 10, corrupt: bool = True) -> list[Path]:
    """n images img00.png.. (every third a JPEG), plus zz-corrupt.jpg when asked."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(n):
        fmt, ext = ("JPEG", "jpg") if k % 3 == 2 else ("PNG", "png")
        p = folder / f"img{k:02d}.{ext}"
        p.write_bytes(image_bytes(k, fmt))
        paths.append(p)
    if corrupt:
        bad = folder / "zz-corrupt.jpg"
        bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
        paths.append(bad)
    return paths


def write_parquet_bytes(path: Path, images: list[Path], row_group_size: int = 4) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "key": [p.stem for p in images],
            "image": pa.array([p.read_bytes() for p in images], pa.binary()),
            "label": list(range(len(images))),
        }
    )
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def write_parquet_paths(path: Path, images: list[Path]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rel = [
        str(p.relative_to(path.parent)) if p.is_relative_to(path.parent) else str(p) for p in images
    ]
    pq.write_table(pa.table({"path": rel}), path)
    return path


def write_tars(folder: Path, images: list[Path], per_tar: int = 4) -> list[Path]:
    """WebDataset shards written with the webdataset library (one sample per image)."""
    import webdataset as wds

    folder.mkdir(parents=True, exist_ok=True)
    tars = []
    for t, start in enumerate(range(0, len(images), per_tar)):
        path = folder / f"shard-{t:03d}.tar"
        with wds.TarWriter(str(path)) as sink:
            for p in images[start : start + per_tar]:
                ext = "jpg" if p.suffix == ".jpg" else "png"
                sink.write({"__key__": p.stem, ext: p.read_bytes(), "cls": b"1"})
        tars.append(path)
    return tars
