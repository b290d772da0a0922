"""The output of ``eigencam batch``: one Parquet file per shard, written atomically.

Layout of an output folder::

    manifest.json                 versions, arguments, counts, failures, per-shard summary
    shards/part-00000.parquet     one row per input image of shard 0, in input order
    shards/part-00001.parquet
    overlays/part-00000/000000-<name>.png   (with --save overlays)

A shard file is written to a temporary name in the same folder and renamed into place
(:func:`eigencam.io.atomic_write`), so it either exists complete or not at all: after a crash
or ``kill -9`` the finished shards are exactly the files present, and a rerun computes the
others. Each file's Parquet metadata carries the run's fingerprint (:func:`shard_metadata`),
so a file from another run is never taken for a finished shard.

Row columns (:func:`result_schema`; the optional ones follow ``--save``):

=====================  ===================  ==================================================
column                 type                 content
=====================  ===================  ==================================================
shard, position        int32                where the image is in the plan
id, source             string               the image's id and the file it came from
status, error          string               ``ok`` or ``error``, and why
width, height          int32                original image size
model, method, layer   string               what explained it
top5_index/label/prob  list                 the 5 best classes (classifier outputs)
target                 list<int32>          classes explained (class-specific methods)
explained_variance     list<float32>        per component (Eigen-CAM)
box                    fixed_size_list[4]   ``maps``/``boxes``: largest component of the map
                                            above the threshold, original pixels, x0 y0 x1 y1
map, map_shape         binary, list[3]      ``maps``: uint8 (k, h, w) at the layer's resolution
map_png                list<binary>         ``map-png``: 8-bit PNG per component, original size
overlay                string               ``overlays``: the overlay file, relative to the run
=====================  ===================  ==================================================
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eigencam.errors import BatchInputError
from eigencam.io.outputs import atomic_write

SHARD_DIR = "shards"
OVERLAY_DIR = "overlays"
MANIFEST = "manifest.json"
SAVE_KINDS = ("maps", "boxes", "map-png", "overlays")
DEFAULT_SAVE = ("maps", "boxes")
META_RUN = b"eigencam.run"
META_SHARD = b"eigencam.shard"
META_NUMERICS = b"eigencam.numerics"
_SHARD_FILE = re.compile(r"^part-(\d{5,})\.parquet$")
_TEMP_FILE = re.compile(r"^\.part-\d{5,}.*\.tmp$|^\.\d{6}-.*\.png\..*\.tmp$")


def shard_name(index: int) -> str:
    """``part-00042.parquet``."""
    return f"part-{index:05d}.parquet"


def shard_path(out: str | Path, index: int) -> Path:
    """The shard file of ``index`` in a run folder."""
    return Path(out) / SHARD_DIR / shard_name(index)


def overlay_dir(out: str | Path, index: int) -> Path:
    """The overlay folder of a shard."""
    return Path(out) / OVERLAY_DIR / f"part-{index:05d}"


def result_schema(save: Sequence[str]):
    """The Arrow schema of the shard files for the ``save`` kinds (:data:`SAVE_KINDS`)."""
    import pyarrow as pa

    fields = [
        ("shard", pa.int32()),
        ("position", pa.int32()),
        ("id", pa.string()),
        ("source", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("model", pa.string()),
        ("method", pa.string()),
        ("layer", pa.string()),
        ("top5_index", pa.list_(pa.int32())),
        ("top5_label", pa.list_(pa.string())),
        ("top5_prob", pa.list_(pa.float32())),
        ("target", pa.list_(pa.int32())),
        ("explained_variance", pa.list_(pa.float32())),
    ]
    if "boxes" in save:
        fields.append(("box", pa.list_(pa.float32(), 4)))
    if "maps" in save:
        fields += [("map", pa.binary()), ("map_shape", pa.list_(pa.int32(), 3))]
    if "map-png" in save:
        fields.append(("map_png", pa.list_(pa.binary())))
    if "overlays" in save:
        fields.append(("overlay", pa.string()))
    return pa.schema(fields)


def shard_metadata(fingerprint: str, index: int, numerics: dict[str, Any]) -> dict[bytes, bytes]:
    """Parquet key-value metadata of a shard file: the run it belongs to, how it was computed."""
    return {
        META_RUN: fingerprint.encode(),
        META_SHARD: str(index).encode(),
        META_NUMERICS: json.dumps(numerics, sort_keys=True).encode(),
    }


def write_shard(
    path: str | Path, rows: list[dict[str, Any]], schema, metadata: dict[bytes, bytes]
) -> Path:
    """Write rows as one Parquet file, atomically (temp file + rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows, schema=schema).replace_schema_metadata(metadata)
    return atomic_write(path, lambda fh: pq.write_table(table, fh, compression="zstd"))


def shard_info(path: str | Path) -> dict[str, Any] | None:
    """A shard file's run fingerprint, index, rows and numerics; None when it is unreadable."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(path)
    except Exception:  # a foreign or damaged file is simply not a finished shard
        return None
    kv = meta.metadata or {}
    try:
        numerics = json.loads(kv.get(META_NUMERICS, b"{}"))
        index = int(kv.get(META_SHARD, b"-1"))
    except ValueError:
        return None
    return {
        "run": kv.get(META_RUN, b"").decode(),
        "index": index,
        "rows": meta.num_rows,
        "numerics": numerics,
    }


def scan_shards(out: str | Path) -> dict[int, dict[str, Any]]:
    """Every readable shard file of a run folder: {index: :func:`shard_info`}."""
    folder = Path(out) / SHARD_DIR
    found: dict[int, dict[str, Any]] = {}
    if not folder.is_dir():
        return found
    for f in sorted(folder.iterdir()):
        m = _SHARD_FILE.match(f.name)
        if m is None:
            continue
        info = shard_info(f)
        if info is not None and info["index"] == int(m.group(1)):
            found[info["index"]] = {**info, "path": f}
    return found


def remove_stale_temp(out: str | Path) -> int:
    """Delete temporary files a killed run left behind (never finished files); returns count."""
    removed = 0
    for folder in (Path(out) / SHARD_DIR, Path(out) / OVERLAY_DIR):
        if not folder.is_dir():
            continue
        for f in folder.rglob(".*.tmp"):
            if f.is_file() and _TEMP_FILE.match(f.name):
                f.unlink(missing_ok=True)
                removed += 1
    return removed


def shard_files(out: str | Path) -> list[Path]:
    """The shard files of a run folder, in shard order."""
    folder = Path(out) / SHARD_DIR
    if not folder.is_dir():
        return []
    return sorted(f for f in folder.iterdir() if _SHARD_FILE.match(f.name))


def read_results(out: str | Path, columns: Sequence[str] | None = None):
    """All rows of a run, in plan order, as one ``pyarrow.Table``.

    Args:
        out: the run folder.
        columns: only these columns (None: all).

    Example:
        >>> table = read_results("runs/ilsvrc")
        >>> ok = table.filter(pyarrow.compute.equal(table["status"], "ok"))
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = shard_files(out)
    if not files:
        raise FileNotFoundError(f"{out}: no shard files in {SHARD_DIR}/ (not a batch run folder?)")
    tables = [pq.read_table(f, columns=list(columns) if columns else None) for f in files]
    return pa.concat_tables([t.replace_schema_metadata(None) for t in tables])


def decode_maps(table) -> list[np.ndarray | None]:
    """The ``map`` column as uint8 arrays (k, h, w) (None for failed images).

    The map of component j at the layer's resolution is
    :math:`\\lfloor 255 \\cdot (m_j - \\min m_j) / (\\max m_j - \\min m_j) \\rfloor`; upsample it
    with :func:`eigencam.postprocess.maps.upsample` (bilinear) to the input size for display.
    """
    if "map" not in table.column_names:
        raise BatchInputError(
            "decode_maps: the table has no 'map' column: the run did not save maps; rerun "
            "`eigencam batch` with --save maps (the default) into a new --out folder"
        )
    out: list[np.ndarray | None] = []
    for data, shape in zip(table.column("map").to_pylist(), table.column("map_shape").to_pylist()):
        if data is None or shape is None:
            out.append(None)
        else:
            out.append(np.frombuffer(data, dtype=np.uint8).reshape(shape))
    return out


def failures(tables: Iterable[Any], limit: int | None = None) -> list[dict[str, Any]]:
    """(shard, position, id, source, error) of the failed rows of shard tables."""
    found: list[dict[str, Any]] = []
    for table in tables:
        status = table.column("status").to_pylist()
        if "error" not in status:
            continue
        cols = {c: table.column(c).to_pylist() for c in ("shard", "position", "id", "source")}
        errors = table.column("error").to_pylist()
        for i, s in enumerate(status):
            if s != "ok":
                found.append({c: cols[c][i] for c in cols} | {"error": errors[i]})
                if limit is not None and len(found) >= limit:
                    return found
    return found
