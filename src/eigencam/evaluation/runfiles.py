"""The run folder of ``eigencam localize`` until it runs on :class:`~eigencam.runs.RunFolder`
as ``attack`` and ``faithfulness`` do (this module goes with that port)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from eigencam.errors import EigenCAMError, RunMismatchError
from eigencam.io.outputs import write_json
from eigencam.runs.folder import RECORDS, RUN_FILE, RunExistsError


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
        parts: the file pattern of the run's records in ``records/``.

    Returns:
        The folder.

    Raises:
        RunExistsError (a FileExistsError): ``out_dir`` holds a run and ``resume`` is false.
        RunMismatchError: the run in ``out_dir`` has other settings.
    """
    out = Path(out_dir)
    command = command or identity.get("command", "the command")
    run_file = out / RUN_FILE
    ident = json.loads(json.dumps(dict(identity), default=str))
    if run_file.is_file():
        if not resume:
            raise RunExistsError(
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
            raise RunMismatchError(
                f"--resume: {out} was run with other settings ({detail}); use the same "
                "arguments, or another --out"
            )
    elif list((out / RECORDS).glob(parts)):
        raise RunExistsError(f"{out}/{RECORDS} holds records but no {RUN_FILE}; use another --out")
    else:
        write_json(run_file, ident)
    (out / RECORDS).mkdir(parents=True, exist_ok=True)
    return out
