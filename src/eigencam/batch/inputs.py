"""What ``eigencam batch`` reads: the input kinds, the deterministic shard plan, one shard's bytes.

Input kinds (``input_format="auto"`` recognises them from the names; docs/scale.md): ``images``
(files, folders, globs, in the order of :func:`eigencam.io.expand_inputs`), ``list`` (a text
file of paths, relative to its folder; blank lines and ``#`` comments skipped), ``parquet`` (a
column of paths, of encoded bytes, or of Hugging Face ``Image`` structs ``{bytes, path}``) and
``webdataset`` (tars, brace patterns expanded; a sample is the run of consecutive members
sharing a key, the name up to the first dot of its base name).

A shard is ``shard_size`` consecutive paths, ``shard_size`` consecutive rows of one Parquet
file of bytes, or one tar (already the dataset's shard). The same inputs and shard size always
give the same shards: that makes a run resumable and the two engines comparable.
:func:`read_shard` reads one shard's encoded images; an item that cannot be read becomes an
error string in its slot, never an exception, so a bad file costs one row, not the shard.
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import json
import os
import re
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eigencam.errors import BatchInputError
from eigencam.io.images import expand_inputs

INPUT_FORMATS = ("auto", "images", "list", "parquet", "webdataset")
LIST_SUFFIXES = (".txt", ".lst", ".list")
PARQUET_SUFFIXES = (".parquet", ".pq")
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
SPECIAL_SUFFIXES = PARQUET_SUFFIXES + TAR_SUFFIXES + LIST_SUFFIXES
DEFAULT_SHARD_SIZE = 256
# A single image file larger than this is refused without reading it (a video, a disk image).
MAX_IMAGE_BYTES = 1 << 30
# Column names tried, in order, when a Parquet file's image column is not given.
IMAGE_COLUMNS = ("image", "img", "image_bytes", "bytes", "jpg", "jpeg", "png", "webp")
PATH_COLUMNS = ("path", "image_path", "file", "filename", "file_name", "filepath", "file_path")
# WebDataset members holding an image, in order of preference.
WDS_IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif", "ppm", "pgm")


@dataclass(frozen=True)
class Shard:
    """One unit of work and of output (``part-{index:05d}.parquet``): ``files`` (an (id,
    absolute path) per image in ``items``), ``parquet`` (the [start, stop) ``rows`` of the file
    ``source``, images in ``column``, ids in ``id_column`` or ``<file name>#<row>``) or
    ``webdataset`` (the tar ``source``; ``column``: the image member's extension, empty for the
    first of :data:`WDS_IMAGE_EXTENSIONS` present)."""

    index: int
    kind: str
    items: tuple[tuple[str, str], ...] = ()
    source: str = ""
    rows: tuple[int, int] = (0, 0)
    column: str = ""
    id_column: str = ""

    @property
    def key(self) -> str:
        """The shard's key in the run folder (its index)."""
        return str(self.index)

    @property
    def size(self) -> int | None:
        """Number of images, None for a tar (known once read)."""
        if self.kind == "files":
            return len(self.items)
        if self.kind == "parquet":
            return self.rows[1] - self.rows[0]
        return None

    def describe(self) -> dict[str, Any]:
        """What identifies the shard's content, for the run fingerprint (JSON-serialisable)."""
        if self.kind == "files":
            return {"kind": self.kind, "items": len(self.items), "sha256": digest(self.items)}
        fields = {k: getattr(self, k) for k in ("kind", "source", "rows", "column", "id_column")}
        return fields | {"rows": list(self.rows), "bytes": file_identity(self.source).get("bytes")}


@dataclass(frozen=True)
class InputPlan:
    """The shards of a run's input.

    Attributes:
        kind: ``images``, ``list``, ``parquet`` or ``webdataset``.
        inputs: the inputs as given.
        column, column_type, id_column: the Parquet column (its type: ``path``, ``bytes`` or
            ``struct``) and id column, or the WebDataset extension ("" when not applicable).
        unmatched: (input, reason) for inputs that matched no image (a glob without match, an
            empty folder): recorded in the manifest, they have no rows.
    """

    kind: str
    inputs: tuple[str, ...]
    shards: tuple[Shard, ...]
    shard_size: int
    column: str = ""
    column_type: str = ""
    id_column: str = ""
    unmatched: tuple[tuple[str, str], ...] = ()

    @property
    def items(self) -> int | None:
        """Total number of images, None when some shard is a tar."""
        sizes = [s.size for s in self.shards]
        return None if any(s is None for s in sizes) else sum(sizes)  # type: ignore[misc]

    def describe(self) -> dict[str, Any]:
        """The plan in the manifest."""
        columns = {k: getattr(self, k) or None for k in ("column", "column_type", "id_column")}
        return (
            {"kind": self.kind, "inputs": list(self.inputs)}
            | columns
            | {
                "shard_size": self.shard_size,
                "shards": len(self.shards),
                "images": self.items,
            }
        )

    def fingerprint(self) -> str:
        """sha256 of what the shards hold: equal plans have equal fingerprints."""
        shards = [s.describe() for s in self.shards]
        return digest({"kind": self.kind, "shard_size": self.shard_size, "shards": shards})


@dataclass
class ShardData:
    """One shard's encoded images, in order: an id per image (the path as listed, the id
    column, ``file#row``, the tar key), the file it came from, its bytes (None where reading
    failed) and None or why it could not be read."""

    shard: int
    ids: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    data: list[bytes | None] = field(default_factory=list)
    errors: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, id_: str, source: str, data: bytes | None, error: str | None = None) -> None:
        self.ids.append(id_)
        self.sources.append(source)
        self.data.append(data if error is None else None)
        self.errors.append(error)


def _require(condition: bool, message: str) -> None:
    """Raise :class:`~eigencam.errors.BatchInputError` with ``message`` unless ``condition``."""
    if not condition:
        raise BatchInputError(message)


# ---------------------------------------------------------------------------------------------
# Planning


def plan_inputs(
    inputs: Sequence[str | Path],
    *,
    input_format: str = "auto",
    shard_size: int = DEFAULT_SHARD_SIZE,
    column: str | None = None,
    id_column: str | None = None,
) -> InputPlan:
    """Recognise the inputs and cut them into shards.

    Args:
        inputs: image files, folders, globs; or one text file of paths; or Parquet files; or
            WebDataset tars (folders and globs of them with an explicit ``input_format``).
        input_format: one of :data:`INPUT_FORMATS` (``auto``: from the names).
        shard_size: images per shard (paths and Parquet rows; one tar is one shard).
        column: Parquet: the column of paths, bytes or image structs; WebDataset: the image
            member's extension. None: recognised.
        id_column: Parquet: a column of image ids.

    Raises:
        BatchInputError: unknown format, mixed kinds, missing column, nothing to read.
    """
    _require(
        input_format in INPUT_FORMATS,
        f"input_format must be one of {', '.join(INPUT_FORMATS)}, got {input_format!r}",
    )
    whole = isinstance(shard_size, int) and not isinstance(shard_size, bool) and shard_size >= 1
    _require(whole, f"shard_size must be an integer >= 1, got {shard_size!r}")
    texts = [str(i) for i in inputs]
    _require(bool(texts), "no input given: pass image files, folders, a list, Parquet or tars")
    kind = _detect(texts) if input_format == "auto" else input_format
    _require(
        kind == "parquet" or not id_column,
        f"id_column applies to Parquet input, not to {kind} input",
    )
    if kind == "images":
        _require(
            not column,
            "column applies to Parquet (image column) and WebDataset (image extension) input",
        )
        paths, unmatched = expand_inputs(texts)
        items = [(str(p), str(p.absolute())) for p in paths]
        plan = _files_plan("images", texts, items, shard_size, unmatched)
    elif kind == "list":
        _require(not column, "column does not apply to a text file of paths")
        plan = _files_plan("list", texts, _read_list(texts), shard_size, [])
    elif kind == "parquet":
        plan = _parquet_plan(texts, shard_size, column, id_column)
    else:
        plan = _webdataset_plan(texts, column)
    reasons = "; ".join(f"{i}: {r}" for i, r in plan.unmatched) or "no images"
    _require(bool(plan.shards), f"the input holds no images to explain ({reasons})")
    return plan


def _detect(texts: list[str]) -> str:
    """The input kind from the names: parquet, webdataset, list, else images."""
    lowered = [t.lower() for t in texts]
    if all(t.endswith(PARQUET_SUFFIXES) for t in lowered):
        return "parquet"
    if all(t.endswith(TAR_SUFFIXES) for t in lowered):
        return "webdataset"
    if len(texts) == 1 and lowered[0].endswith(LIST_SUFFIXES) and Path(texts[0]).is_file():
        return "list"
    special = [t for t, low in zip(texts, lowered) if low.endswith(SPECIAL_SUFFIXES)]
    if special:
        raise BatchInputError(
            f"cannot mix input kinds: {special[0]!r} is not an image, but other inputs are "
            "images; give Parquet files, tars or one list on their own, or set the input "
            "format (--input-format)"
        )
    return "images"


def _files_plan(
    kind: str,
    texts: list[str],
    items: list[tuple[str, str]],
    shard_size: int,
    unmatched: Sequence[tuple[str, str]],
    **extra: str,
) -> InputPlan:
    shards = tuple(
        Shard(index=k, kind="files", items=tuple(items[start : start + shard_size]))
        for k, start in enumerate(range(0, len(items), shard_size))
    )
    return InputPlan(kind, tuple(texts), shards, shard_size, unmatched=tuple(unmatched), **extra)


def _read_list(texts: list[str]) -> list[tuple[str, str]]:
    _require(len(texts) == 1, f"a list input is one text file of paths, got {len(texts)} inputs")
    path = Path(texts[0])
    _require(path.is_file(), f"list file {texts[0]!r} not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise BatchInputError(f"{path}: cannot read the list of paths ({err})") from err
    entries = [e for e in (line.strip() for line in lines) if e and not e.startswith("#")]
    return [(e, _resolve(e, path.absolute().parent)) for e in entries]


def _resolve(entry: str, base: Path) -> str:
    """A listed path, made absolute against ``base`` (the folder of the file that lists it)."""
    p = Path(entry).expanduser()
    return str(p if p.is_absolute() else base / p)


def _expand_files(texts: list[str], suffixes: tuple[str, ...], what: str) -> list[Path]:
    """Files of a kind from names, folders (recursive), globs and brace patterns."""
    found: dict[str, Path] = {}
    for pattern in (p for text in texts for p in expand_braces(text)):
        p = Path(pattern)
        if p.is_dir():
            matches = sorted(
                f for f in p.rglob("*") if f.is_file() and f.name.lower().endswith(suffixes)
            )
            _require(bool(matches), f"folder {pattern!r} holds no {what} files")
        elif any(ch in pattern for ch in "*?[") and not p.exists():
            matches = sorted(Path(f) for f in glob.glob(pattern, recursive=True))
            _require(bool(matches), f"pattern {pattern!r} matched no {what} files")
        else:
            _require(p.is_file(), f"{what} file {pattern!r} not found")
            matches = [p]
        for m in matches:
            found.setdefault(str(m.absolute()), m.absolute())
    return list(found.values())


def expand_braces(text: str) -> list[str]:
    """WebDataset-style brace patterns: ``a-{000..003}.tar`` and ``{train,val}.tar``.

    Numeric ranges keep the zero padding of their first bound; several braces multiply.
    """
    match = re.search(r"\{([^{}]*)\}", text)
    if match is None:
        return [text]
    head, tail, body = text[: match.start()], text[match.end() :], match.group(1)
    numeric = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if numeric:
        lo, hi = numeric.group(1), numeric.group(2)
        width = len(lo) if lo.startswith("0") else 0
        options = [str(v).zfill(width) for v in range(int(lo), int(hi) + 1)]
    else:
        options = body.split(",")
    return [out for opt in options for out in expand_braces(head + opt + tail)]


def _parquet_plan(
    texts: list[str], shard_size: int, column: str | None, id_column: str | None
) -> InputPlan:
    import pyarrow.parquet as pq

    files = _expand_files(texts, PARQUET_SUFFIXES, "Parquet")
    chosen, ctype, counts = column, "", []
    for f in files:
        try:
            meta, schema = pq.read_metadata(f), pq.read_schema(f)
        except Exception as err:  # pyarrow raises ArrowInvalid/OSError for non-Parquet files
            raise BatchInputError(f"{f}: not a readable Parquet file ({err})") from err
        name = chosen or _guess_column(schema, f)
        this = _column_type(schema, name, f)
        _require(
            not id_column or id_column in schema.names,
            f"{f}: no id column {id_column!r}; columns: {', '.join(schema.names)}",
        )
        _require(
            chosen is None or not ctype or this == ctype,
            f"{f}: column {name!r} holds {this} but the previous files' holds {ctype}",
        )
        chosen, ctype = name, this
        counts.append(meta.num_rows)
    extra = {"column": chosen, "column_type": ctype, "id_column": id_column or ""}
    if ctype == "path":
        items = []
        for f in files:
            table = pq.read_table(f, columns=[chosen] + ([id_column] if id_column else []))
            paths = table.column(chosen).to_pylist()
            ids = table.column(id_column).to_pylist() if id_column else paths
            for p, i in zip(paths, ids):
                id_ = p if i is None else i
                where = "" if p is None else _resolve(p, f.parent)
                items.append(("" if id_ is None else str(id_), where))
        return _files_plan("parquet", texts, items, shard_size, [], **extra)
    ranges = [
        (f, a, min(n, a + shard_size))
        for f, n in zip(files, counts)
        for a in range(0, n, shard_size)
    ]
    shards = tuple(
        Shard(k, "parquet", source=str(f), rows=(a, b), column=chosen, id_column=id_column or "")
        for k, (f, a, b) in enumerate(ranges)
    )
    return InputPlan("parquet", tuple(texts), shards, shard_size, **extra)


def _kind(t: Any) -> str | None:
    """``bytes``, ``path`` or ``struct`` for an Arrow type that can hold images, else None."""
    import pyarrow as pa

    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "bytes"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "path"
    return "struct" if pa.types.is_struct(t) and t.get_field_index("bytes") >= 0 else None


def _column_type(schema: Any, name: str, path: Path) -> str:
    _require(
        name in schema.names,
        f"{path}: no column {name!r}; columns: {', '.join(schema.names)} (set --column)",
    )
    kind = _kind(schema.field(name).type)
    _require(
        kind is not None,
        f"{path}: column {name!r} has type {schema.field(name).type}; expected image bytes "
        "(binary), a path (string) or an image struct with a 'bytes' field",
    )
    return kind  # type: ignore[return-value]


def _guess_column(schema: Any, path: Path) -> str:
    """The image column: a known name first, then the first binary or image-struct column,
    then a known name of a path column."""
    images = [f.name for f in schema if _kind(f.type) in ("bytes", "struct")]
    known = [n for n in IMAGE_COLUMNS if n in images] + images
    known += [n for n in PATH_COLUMNS if n in schema.names]
    _require(
        bool(known),
        f"{path}: no image column found (binary bytes, an image struct, or a path column named "
        f"{', '.join(PATH_COLUMNS)}); columns: {', '.join(schema.names)}; set --column",
    )
    return known[0]


def _webdataset_plan(texts: list[str], column: str | None) -> InputPlan:
    tars = _expand_files(texts, TAR_SUFFIXES, "tar")
    ext = (column or "").lower().lstrip(".")
    shards = tuple(
        Shard(index=k, kind="webdataset", source=str(t), column=ext) for k, t in enumerate(tars)
    )
    return InputPlan("webdataset", tuple(texts), shards, 0, column=ext)


def digest(payload: Any) -> str:
    """sha256 of a JSON-ready value (keys sorted)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def file_identity(path: str) -> dict[str, Any]:
    """A file's path, size and modification time (the path only when it cannot be read)."""
    try:
        st = os.stat(path)
        return {"path": str(path), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
    except OSError:
        return {"path": str(path)}


# ---------------------------------------------------------------------------------------------
# Reading


def read_shard(shard: Shard, max_bytes: int = MAX_IMAGE_BYTES) -> ShardData:
    """Read one shard's encoded images (a :class:`ShardData` in the shard's item order);
    unreadable items get an error instead of bytes, a file or tar member larger than
    ``max_bytes`` is refused unread."""
    if shard.kind == "files":
        out = ShardData(shard.index)
        for id_, path in shard.items:
            out.add(id_, path, *_read_file(path, max_bytes))
        return out
    if shard.kind == "parquet":
        return _read_parquet(shard)
    _require(shard.kind == "webdataset", f"unknown shard kind {shard.kind!r}")
    return _read_tar(shard, max_bytes)


def _read_file(path: str, max_bytes: int) -> tuple[bytes | None, str | None]:
    """(the file's bytes, None), or (None, why it cannot be read)."""
    if not path:
        return None, "no path (null in the path column)"
    try:
        size = os.stat(path).st_size
        if os.path.isdir(path):
            return None, "is a directory, not an image"
        if size > max_bytes:
            return None, f"file is {size:,} bytes, above {max_bytes:,}"
        with open(path, "rb") as fh:
            return fh.read(), None
    except FileNotFoundError:
        return None, "no such file"
    except PermissionError:
        return None, "permission denied"
    except OSError as err:
        return None, f"cannot read the file ({err.strerror or err})"


def _read_parquet(shard: Shard) -> ShardData:
    import pyarrow.parquet as pq

    (start, stop), source = shard.rows, shard.source
    out = ShardData(shard.index)
    default_ids = [f"{Path(source).name}#{r}" for r in range(start, stop)]
    try:
        pf = pq.ParquetFile(source)
        sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.metadata.num_row_groups)]
        offsets = list(itertools.accumulate(sizes, initial=0))
        groups = [g for g in range(len(sizes)) if offsets[g] < stop and offsets[g + 1] > start]
        first = offsets[groups[0]] if groups else 0
        cols = [shard.column] + ([shard.id_column] if shard.id_column else [])
        table = pf.read_row_groups(groups, columns=cols).slice(start - first, stop - start)
    except Exception as err:  # the file changed or broke since planning: every row fails
        for id_ in default_ids:
            out.add(id_, source, None, f"cannot read rows {start}..{stop - 1} of {source} ({err})")
        return out
    values = table.column(shard.column).to_pylist()
    ids = table.column(shard.id_column).to_pylist() if shard.id_column else default_ids
    for value, id_, default in zip(values, ids, default_ids):
        id_ = default if id_ is None else str(id_)
        if isinstance(value, dict):  # an image struct {bytes, path}
            data, path = value.get("bytes"), value.get("path")
            if data is None and path:
                p = Path(path) if Path(path).is_absolute() else Path(source).parent / path
                out.add(id_, source, *_read_file(str(p), MAX_IMAGE_BYTES))
                continue
            value = data
        if value is None:
            out.add(id_, source, None, f"no image (null in column {shard.column!r})")
        else:
            out.add(id_, source, bytes(value))
    return out


_WDS_KEY = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")
_WDS_META = re.compile(r"__[^/]*__($|/)")


def _iter_samples(path: str, max_bytes: int) -> Iterator[tuple[str, dict[str, bytes | str]]]:
    """(key, {extension: bytes, or an error string}) per sample of a tar, in order: regular
    members only, names like ``__key__`` skipped, consecutive members with one key together."""
    key: str | None = None
    sample: dict[str, bytes | str] = {}
    with tarfile.open(path, mode="r|*") as stream:
        for member in stream:
            m = _WDS_KEY.match(member.name)
            if not member.isreg() or _WDS_META.match(member.name) or m is None:
                continue
            prefix, ext = m.group(1), m.group(2).lower()
            if prefix != key:
                if key is not None:
                    yield key, sample
                key, sample = prefix, {}
            if member.size > max_bytes:
                sample[ext] = f"member {member.name} is {member.size:,} bytes, above {max_bytes:,}"
                continue
            fh = stream.extractfile(member)
            sample[ext] = fh.read() if fh is not None else b""
    if key is not None:
        yield key, sample


def _read_tar(shard: Shard, max_bytes: int) -> ShardData:
    out = ShardData(shard.index)
    exts = [shard.column] if shard.column else WDS_IMAGE_EXTENSIONS
    wanted = f".{shard.column}" if shard.column else "image (" + ", ".join(exts) + ")"
    try:
        for key, sample in _iter_samples(shard.source, max_bytes):
            ext = next((e for e in exts if e in sample), None)
            if ext is None:
                have = ", ".join(sorted(sample)) or "nothing"
                out.add(key, shard.source, None, f"sample has no {wanted} member; it has {have}")
            elif isinstance(sample[ext], str):
                out.add(key, shard.source, None, str(sample[ext]))
            else:
                out.add(key, shard.source, sample[ext])  # type: ignore[arg-type]
    except (tarfile.TarError, OSError, EOFError) as err:
        # A truncated or corrupt tar: the samples read so far are kept, the rest is one row.
        out.add(
            f"{Path(shard.source).name}#rest",
            shard.source,
            None,
            f"tar file unreadable after {len(out)} samples ({err}); the remaining samples, if "
            "any, are not explained",
        )
    return out
