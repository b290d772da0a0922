"""The output of ``eigencam batch``: the Parquet codec of its run folder, one file per shard.

Layout of an output folder (a :class:`~eigencam.runs.RunFolder` whose parts are the shards)::

    run.json                      the run's fingerprint, release and run format
    manifest.json                 versions, arguments, counts, failures, per-shard summary
    shards/part-00000.parquet     one row per input image of shard 0, in input order
    shards/part-00001.parquet
    overlays/part-00000/000000-<name>.png   (with --save overlays)

A shard file is written to a temporary name in the same folder and renamed into place, so it
either exists complete or not at all: after a crash or ``kill -9`` the finished shards are
exactly the files present, and a rerun computes the others. Each file's Parquet metadata
carries the run's fingerprint and the shard's index (:class:`ParquetCodec`), so a file from
another run is never taken for a finished shard.

The row columns (:func:`result_schema`; the optional ones follow ``--save``) are listed in
docs/scale.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eigencam.errors import BatchInputError
from eigencam.io.outputs import atomic_write
from eigencam.runs.folder import RunFolder

SHARD_DIR = "shards"
OVERLAY_DIR = "overlays"
MANIFEST = "manifest.json"
SAVE_KINDS = ("maps", "boxes", "map-png", "overlays")
DEFAULT_SAVE = ("maps", "boxes")
META_RUN = b"eigencam.run"
META_SHARD = b"eigencam.shard"
META_NUMERICS = b"eigencam.numerics"
_TEMP_FILE = re.compile(r"^\.part-\d{5,}.*\.tmp$|^\.\d{6}-.*\.png\..*\.tmp$")


class ParquetCodec:
    """Shard files: a ``pyarrow.Table`` per part, stamped with the run's ``fingerprint``
    (:meth:`keys` recognises only the shards of this run)."""

    suffix = "parquet"

    def __init__(self, fingerprint: str = "") -> None:
        self.fingerprint = fingerprint

    def table(self, rows: list[dict[str, Any]], schema: Any, index: int, numerics: dict) -> Any:
        """The part of shard ``index``: its rows, and the run, index and numerics as metadata."""
        import pyarrow as pa

        meta = {
            META_RUN: self.fingerprint.encode(),
            META_SHARD: str(index).encode(),
            META_NUMERICS: json.dumps(numerics, sort_keys=True).encode(),
        }
        return pa.Table.from_pylist(rows, schema=schema).replace_schema_metadata(meta)

    def write(self, path: Path, part: Any) -> None:
        import pyarrow.parquet as pq

        atomic_write(path, lambda fh: pq.write_table(part, fh, compression="zstd"))

    def read(self, path: Path, columns: Sequence[str] | None = None) -> Any:
        import pyarrow.parquet as pq

        table = pq.read_table(path, columns=list(columns) if columns else None)
        return table.replace_schema_metadata(None)

    def info(self, path: Path) -> dict[str, Any] | None:
        """A shard file's run, index, rows and numerics; None when unreadable or misnamed."""
        import pyarrow.parquet as pq

        try:
            meta = pq.read_metadata(path)
            kv = meta.metadata or {}
            numerics = json.loads(kv.get(META_NUMERICS, b"{}"))
            index = int(kv.get(META_SHARD, b"-1"))
        except Exception:  # a foreign or damaged file is simply not a finished shard
            return None
        if index != RunFolder.index(path):
            return None
        run = kv.get(META_RUN, b"").decode()
        return {"run": run, "index": index, "rows": meta.num_rows, "numerics": numerics}

    def keys(self, path: Path) -> set[str]:
        info = self.info(path)
        return {str(info["index"])} if info and info["run"] == self.fingerprint else set()


def shard_folder(out: str | Path, fingerprint: str = "") -> RunFolder:
    """The run folder of a batch run: its parts are ``shards/part-NNNNN.parquet``."""
    return RunFolder(
        out,
        {"fingerprint": fingerprint},
        command="batch",
        codec=ParquetCodec(fingerprint),
        parts_dir=SHARD_DIR,
        width=5,
    )


def shard_files(out: str | Path) -> list[Path]:
    """The shard files of a run folder, in shard order."""
    return shard_folder(out).parts()


def overlay_dir(out: str | Path, index: int) -> Path:
    """The overlay folder of a shard."""
    return Path(out) / OVERLAY_DIR / f"part-{index:05d}"


def result_schema(save: Sequence[str]) -> Any:
    """The Arrow schema of the shard files for the ``save`` kinds (:data:`SAVE_KINDS`)."""
    import pyarrow as pa

    i32, f32, text = pa.int32(), pa.float32(), pa.string()
    fields = [(c, i32) for c in ("shard", "position")]
    fields += [(c, text) for c in ("id", "source", "status", "error")]
    fields += [("width", i32), ("height", i32), ("model", text), ("method", text)]
    fields += [("layer", text), ("top5_index", pa.list_(i32)), ("top5_label", pa.list_(text))]
    fields += [("top5_prob", pa.list_(f32)), ("target", pa.list_(i32))]
    fields += [("explained_variance", pa.list_(f32))]
    if "boxes" in save:
        fields.append(("box", pa.list_(f32, 4)))
    if "maps" in save:
        fields += [("map", pa.binary()), ("map_shape", pa.list_(i32, 3))]
    if "map-png" in save:
        fields.append(("map_png", pa.list_(pa.binary())))
    if "overlays" in save:
        fields.append(("overlay", text))
    return pa.schema(fields)


def remove_stale_temp(out: str | Path) -> int:
    """Delete temporary files a killed run left behind (never finished files); returns count."""
    removed = 0
    for folder in (Path(out) / SHARD_DIR, Path(out) / OVERLAY_DIR):
        for f in folder.rglob(".*.tmp") if folder.is_dir() else []:
            if f.is_file() and _TEMP_FILE.match(f.name):
                f.unlink(missing_ok=True)
                removed += 1
    return removed


def read_results(out: str | Path, columns: Sequence[str] | None = None) -> Any:
    """All rows of a run, in plan order, as one ``pyarrow.Table``.

    Args:
        out: the run folder.
        columns: only these columns (None: all).

    Raises:
        FileNotFoundError: the folder holds no shard file.

    Example:
        >>> table = read_results("runs/ilsvrc")
        >>> ok = table.filter(pyarrow.compute.equal(table["status"], "ok"))
    """
    import pyarrow as pa

    folder = shard_folder(out)
    files = folder.parts()
    if not files:
        raise FileNotFoundError(f"{out}: no shard files in {SHARD_DIR}/ (not a batch run folder?)")
    return pa.concat_tables([folder.codec.read(f, columns) for f in files])


def decode_maps(table: Any) -> list[np.ndarray | None]:
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
    return [
        None if data is None or shape is None else np.frombuffer(data, np.uint8).reshape(shape)
        for data, shape in zip(
            table.column("map").to_pylist(), table.column("map_shape").to_pylist()
        )
    ]
