"""The run folder of every command: ``run.json`` (the run's identity) and
``records/part-NNNNNN.<ext>``, one finished batch each, written atomically through a *codec*:
``json`` (rows and failures, one dict per image), ``npz`` (arrays, ``eigencam localize``) or the
caller's own (``eigencam batch`` writes Parquet shards). A resumed run skips the images its parts
record, and a folder of a run with other settings or of another release's run format is refused
with :class:`~eigencam.errors.RunMismatchError`.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from eigencam import __version__
from eigencam.errors import EigenCAMError, OutputError, RunMismatchError
from eigencam.io.outputs import atomic_write, describe_os_error, write_json

RUN_FILE = "run.json"
RECORDS = "records"
LOCK_FILE = ".eigencam.lock"
#: Version of the folder layout; a folder of another format is refused, never mixed.
RUN_FORMAT = 2
_PART = re.compile(r"^part-(\d+)\.")


class Codec(Protocol):
    """How one part is stored."""

    suffix: str

    def write(self, path: Path, part: Any) -> None: ...

    def read(self, path: Path) -> Any: ...

    def keys(self, path: Path) -> set[str]: ...


class JsonCodec:
    """``{"rows": [...], "failures": [...]}``: one dict per image, each with a ``"key"``."""

    suffix = "json"

    def write(self, path: Path, part: Any) -> None:
        write_json(path, {"rows": list(part["rows"]), "failures": list(part["failures"])})

    def read(self, path: Path) -> Any:
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise EigenCAMError(f"{path} is unreadable ({err}); delete it and --resume") from None

    def keys(self, path: Path) -> set[str]:
        data = self.read(path)
        return {r["key"] for r in [*data.get("rows", []), *data.get("failures", [])]}


class NpzCodec:
    """A dict of arrays; ``keys`` and ``skipped_keys`` name the images it records."""

    suffix = "npz"

    def write(self, path: Path, part: Any) -> None:
        atomic_write(path, lambda fh: np.savez(fh, **part))

    def read(self, path: Path) -> Any:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def keys(self, path: Path) -> set[str]:
        with np.load(path, allow_pickle=False) as z:
            names = [z["keys"], z["skipped_keys"] if "skipped_keys" in z.files else []]
            return {str(k) for arr in names for k in arr}


CODECS: dict[str, Codec] = {"json": JsonCodec(), "npz": NpzCodec()}


@dataclass
class RunRecords:
    """Every recorded image of a json-codec run, sorted by key: ``rows``, one dict per evaluated
    image (a later record of an image replaces an earlier one), and ``failures``,
    ``{"key", "file", "error"}`` per image that could not be evaluated and has no row."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)

    def keys(self) -> set[str]:
        """Keys of every recorded image, evaluated or failed."""
        return {r["key"] for r in self.rows} | {f["key"] for f in self.failures}

    def restrict(self, keys: set[str]) -> RunRecords:
        """The records of the images in ``keys`` only (a resumed run's folder may hold more)."""
        return RunRecords(
            rows=[r for r in self.rows if r["key"] in keys],
            failures=[f for f in self.failures if f["key"] in keys],
        )


class RunFolder:
    """A run's folder: its identity, its parts, resume.

    Args:
        path: the folder (created).
        identity: JSON-ready settings that must not change between a run and its resumption.
        command: the command named in messages (``explain``, ``localize``...).
        codec: ``"json"``, ``"npz"`` or a :class:`Codec`.
        parts_dir, width: the folder of parts (``eigencam batch``: ``shards``); the digits of
            the part numbers.
    """

    def __init__(
        self,
        path: str | Path,
        identity: Mapping[str, Any],
        *,
        command: str,
        codec: str | Codec = "json",
        parts_dir: str = RECORDS,
        width: int = 6,
    ) -> None:
        self.path = Path(path)
        self.parts_dir, self.width = parts_dir, width
        self.command = command
        self.codec = CODECS[codec] if isinstance(codec, str) else codec
        self.identity = json.loads(json.dumps({"command": command, **identity}, default=str))
        self._next = 0
        self._lock_fd: int | None = None

    @property
    def records_dir(self) -> Path:
        return self.path / self.parts_dir

    def open(self, *, resume: bool, overwrite: bool = False) -> RunFolder:
        """Create the folder, or check that the run in it is this run, and lock it until
        :meth:`close`. ``overwrite`` discards a run already there (its ``run.json`` and parts;
        output files are replaced as the new run writes them).

        Raises:
            RunExistsError (a ``FileExistsError``): the folder holds a run and not ``resume``.
            RunMismatchError: the run in the folder has other settings or another run format.
            OutputError: the folder cannot be created or written.
        """
        self._lock()
        try:
            self._open(resume=resume, overwrite=overwrite)
        except BaseException:
            self.close()
            raise
        return self

    def _open(self, *, resume: bool, overwrite: bool) -> None:
        run_file = self.path / RUN_FILE
        if overwrite and not resume:
            for old in [run_file, *self.records_dir.glob("part-*")]:
                old.unlink(missing_ok=True)
        if run_file.is_file():
            if not resume:
                raise RunExistsError(
                    f"{self.path} already holds a run of `eigencam {self.command}`; pass "
                    "--resume to continue it, --overwrite to start again, or choose another --out"
                )
            self._check(run_file)
        elif self.parts():
            raise RunExistsError(
                f"{self.records_dir} holds records but no {RUN_FILE}; use another --out"
            )
        else:
            try:
                self.records_dir.mkdir(parents=True, exist_ok=True)
                stamp = {"eigencam": __version__, "run_format": RUN_FORMAT}
                write_json(run_file, {**stamp, **self.identity})
            except OSError as err:
                raise OutputError(
                    f"cannot write the run folder {self.path}: {describe_os_error(err)}"
                ) from None
        self.records_dir.mkdir(parents=True, exist_ok=True)
        self._next = max((self.index(p) for p in self.parts()), default=-1) + 1

    def _lock(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise OutputError(
                f"cannot write the output folder {self.path}: {describe_os_error(err)}; choose "
                "another --out"
            ) from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise RunExistsError(
                f"another eigencam run is writing into {self.path} now; wait for it, or choose "
                "another --out"
            ) from None

    def close(self) -> None:
        """Release the folder's lock."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _check(self, run_file: Path) -> None:
        try:
            previous = json.loads(run_file.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise EigenCAMError(f"{run_file} is unreadable ({err}); start a new --out") from None
        if previous.get("run_format") != RUN_FORMAT:
            release = previous.get("eigencam", "0.1.x")
            raise RunMismatchError(
                f"--resume: {self.path} was written by eigencam {release} (run format "
                f"{previous.get('run_format', 1)}); eigencam {__version__} writes run format "
                f"{RUN_FORMAT} and does not mix them: finish it with eigencam {release}, or "
                "start a new --out"
            )
        diffs = [k for k in self.identity if previous.get(k) != self.identity[k]]
        if diffs:
            detail = "; ".join(
                f"{k}: was {previous.get(k)!r}, now {self.identity[k]!r}" for k in diffs
            )
            raise RunMismatchError(
                f"--resume: {self.path} was run with other settings ({detail}); use the same "
                "arguments, or another --out"
            )

    # -- parts -----------------------------------------------------------------------------
    def parts(self) -> list[Path]:
        """The part files, in order."""
        if not self.records_dir.is_dir():
            return []
        return sorted(self.records_dir.glob(f"part-*.{self.codec.suffix}"))

    @staticmethod
    def index(path: Path) -> int:
        match = _PART.match(path.name)
        return int(match.group(1)) if match else -1

    def part_path(self, index: int | None = None) -> Path:
        """The path of part ``index``; without it, the next free part (reserved)."""
        if index is None:
            index, self._next = self._next, self._next + 1
        return self.records_dir / f"part-{index:0{self.width}d}.{self.codec.suffix}"

    def write(self, part: Any, path: Path | None = None) -> Path:
        """Atomically write ``part`` (to ``path``, else to the next free part); an
        :class:`~eigencam.errors.OutputError` when it cannot be written."""
        path = path or self.part_path()
        try:
            self.codec.write(path, part)
        except OSError as err:
            raise OutputError(f"{describe_os_error(err)} writing {path}") from None
        return path

    def done_keys(self) -> set[str]:
        """Keys of every image the parts record (evaluated or failed)."""
        return {k for p in self.parts() for k in self.codec.keys(p)}

    def read(self) -> list[Any]:
        """Every part, decoded, in order."""
        return [self.codec.read(p) for p in self.parts()]

    def records(self) -> RunRecords:
        """The rows and failures of a json-codec run (a later part wins for a repeated key)."""
        rows: dict[str, dict[str, Any]] = {}
        failures: dict[str, dict[str, Any]] = {}
        for data in self.read():
            for row in data.get("rows", []):
                rows[row["key"]] = row
                failures.pop(row["key"], None)
            for fail in data.get("failures", []):
                failures[fail["key"]] = fail
                rows.pop(fail["key"], None)
        return RunRecords(
            rows=[rows[k] for k in sorted(rows)],
            failures=[failures[k] for k in sorted(failures)],
        )


class RunExistsError(EigenCAMError, FileExistsError):
    """The output folder already holds a run (or another run is writing into it) and neither
    resume nor overwrite was asked for: a usage error."""
