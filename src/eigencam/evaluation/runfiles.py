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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eigencam.errors import EigenCAMError
from eigencam.io.outputs import write_json

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


def _parts(out: Path) -> list[Path]:
    return sorted((out / RECORDS).glob("part-*.json"))


def open_run(out_dir: str | Path, identity: Mapping[str, Any], *, resume: bool) -> Path:
    """Create a run folder, or check that a resumed one was run with the same ``identity``.

    Args:
        out_dir: the folder.
        identity: JSON-ready settings that must not change between a run and its resumption;
            its ``"command"`` names the command in messages.
        resume: continue the run already in ``out_dir``.

    Returns:
        The folder.

    Raises:
        FileExistsError: ``out_dir`` holds a run and ``resume`` is false.
        ValueError: the run in ``out_dir`` has other settings.
    """
    out = Path(out_dir)
    command = identity.get("command", "the command")
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
    elif _parts(out):
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
