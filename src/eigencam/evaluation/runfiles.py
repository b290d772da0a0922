"""Resumable run folders for the per-image benchmarks (``eigencam attack``, ``faithfulness``).

A run folder holds ``run.json`` (what identifies the run: dataset, model, methods, settings)
and ``records/part-NNNNNN.json``, one file per finished batch, written atomically: one row per
evaluated image and one failure record per image that could not be evaluated. A killed run
keeps every finished batch; resuming skips the images already recorded and refuses to mix runs
with different settings. The outputs (``metrics.json``, ``table.md``, ``per_image.csv``) are
then computed from the records alone.

``eigencam localize`` keeps its own binary records (:mod:`eigencam.evaluation.runner`): its
per-image data are arrays of boxes over a threshold grid, not rows of numbers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eigencam.errors import EigenCAMError
from eigencam.io.outputs import write_json

if TYPE_CHECKING:
    from eigencam.evaluation.datasets import Dataset, Sample
    from eigencam.models.preprocessing import Preprocessing
    from eigencam.runs.source import LoadedImage

RUN_FILE = "run.json"
RECORDS = "records"


@dataclass
class RunRecords:
    """Every recorded image of a run.

    Attributes:
        rows: one dict per evaluated image (key ``"key"``), sorted by key; a later record of an
            image replaces an earlier one.
        failures: ``{"key", "file", "error"}`` per image that could not be evaluated and has no
            row, sorted by key.
    """

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


def _parts(out: Path, pattern: str = "part-*.json") -> list[Path]:
    return sorted((out / RECORDS).glob(pattern))


def open_run(
    out_dir: str | Path,
    identity: Mapping[str, Any],
    *,
    resume: bool,
    command: str | None = None,
    parts: str = "part-*.json",
) -> Path:
    """Create a run folder, or check that a resumed one was run with the same ``identity``.

    Args:
        out_dir: the folder.
        identity: JSON-ready settings that must not change between a run and its resumption.
        resume: continue the run already in ``out_dir``.
        command: the command named in messages (default: the identity's ``"command"``).
        parts: the file pattern of the run's records in ``records/`` (``eigencam localize``
            writes binary ``part-*.npz`` files; see :mod:`eigencam.evaluation.runner`).

    Returns:
        The folder.

    Raises:
        FileExistsError: ``out_dir`` holds a run and ``resume`` is false.
        ValueError: the run in ``out_dir`` has other settings.
    """
    out = Path(out_dir)
    command = command or identity.get("command", "the command")
    run_file = out / RUN_FILE
    ident = json.loads(json.dumps(dict(identity), default=str))
    if run_file.is_file():
        if not resume:
            raise FileExistsError(
                f"{out} already holds a run of `eigencam {command}`; pass --resume to continue "
                "it, or choose another --out"
            )
        try:
            previous = json.loads(run_file.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise EigenCAMError(f"{run_file} is unreadable ({err}); start a new --out") from None
        diffs = [k for k in ident if previous.get(k) != ident[k]]
        if diffs:
            detail = "; ".join(f"{k}: was {previous.get(k)!r}, now {ident[k]!r}" for k in diffs)
            raise ValueError(
                f"--resume: {out} was run with other settings ({detail}); use the same "
                "arguments, or another --out"
            )
    elif _parts(out, parts):
        raise FileExistsError(f"{out}/{RECORDS} holds records but no {RUN_FILE}; use another --out")
    else:
        write_json(run_file, ident)
    (out / RECORDS).mkdir(parents=True, exist_ok=True)
    return out


def write_part(
    out_dir: str | Path, rows: list[dict[str, Any]], failures: list[dict[str, Any]]
) -> Path:
    """Atomically write one batch's rows and failures as the next ``records/part-NNNNNN.json``."""
    out = Path(out_dir)
    index = len(_parts(out))
    return write_json(
        out / RECORDS / f"part-{index:06d}.json", {"rows": rows, "failures": failures}
    )


def load_records(out_dir: str | Path) -> RunRecords:
    """Read every part of a run (later parts win for an image recorded twice)."""
    rows: dict[str, dict[str, Any]] = {}
    failures: dict[str, dict[str, Any]] = {}
    for f in _parts(Path(out_dir)):
        try:
            data = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise EigenCAMError(f"{f} is unreadable ({err}); delete it and --resume") from None
        for row in data.get("rows", []):
            rows[row["key"]] = row
            failures.pop(row["key"], None)
        for fail in data.get("failures", []):
            failures[fail["key"]] = fail
            rows.pop(fail["key"], None)
    return RunRecords(
        rows=[rows[k] for k in sorted(rows)], failures=[failures[k] for k in sorted(failures)]
    )


def pending_batches(
    dataset: Dataset,
    preprocessing: Preprocessing,
    *,
    done: set[str],
    batch_size: int,
    workers: int,
    max_pixels: int | None,
) -> Iterator[tuple[list[tuple[LoadedImage, Sample]], list[dict[str, Any]]]]:
    """The images of ``dataset`` whose key is not in ``done`` (the keys a resumed run has
    recorded), decoded in batches.

    Yields, per batch, the decoded images with their samples and one failure record
    (``{"key", "file", "error"}``) per file that could not be read.
    """
    from eigencam.runs.source import iter_batches

    todo = [s for s in dataset.samples if s.key not in done]
    by_path = {s.path: s for s in todo}
    for images, failures in iter_batches(
        [s.path for s in todo],
        preprocessing,
        batch_size=batch_size,
        workers=workers,
        max_pixels=max_pixels,
    ):
        fails = [
            {"key": by_path[f.path].key, "file": str(f.path), "error": f.error} for f in failures
        ]
        yield [(img, by_path[img.path]) for img in images], fails
