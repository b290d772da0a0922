"""A batch run from start to finish: plan, resume, run an engine, write the manifest.

:func:`run_batch` is what ``eigencam batch`` runs. It is resumable and idempotent:

1. the inputs are cut into shards (:func:`~eigencam.batch.inputs.plan_inputs`); the run's
   fingerprint is a hash of the shards and of the settings that decide the rows' content
   (:meth:`BatchSpec.identity`: model, weights, method and options, preprocessing, threshold,
   what is saved);
2. an output folder holding another run (a different fingerprint) is refused, naming what
   differs; temporary files a killed run left are removed;
3. the shard files already present with this fingerprint are finished work and are skipped;
   the engine computes the others, each written atomically;
4. ``manifest.json`` is written at the start (``status: running``) and at the end, from the
   shard files themselves: the counts and failures are those of the whole run, however many
   times it was resumed, and are the same for both engines.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eigencam.batch.engines import ENGINES, run_local, run_ray
from eigencam.batch.inputs import DEFAULT_SHARD_SIZE, InputPlan, plan_inputs
from eigencam.batch.shards import (
    MANIFEST,
    failures,
    remove_stale_temp,
    scan_shards,
    shard_name,
)
from eigencam.batch.worker import BatchSpec, ShardSummary
from eigencam.errors import MissingDependencyError, RunMismatchError
from eigencam.io.outputs import write_json
from eigencam.models import RandomWeightsWarning, model_entry

SCHEMA_VERSION = 1
# Failures listed in manifest.json (all of them are rows with status "error" in the shards).
MANIFEST_FAILURES = 1000


class MixedNumericsWarning(UserWarning):
    """A resumed run's shards were computed with other numerics (device, threads, batch size):
    their floats may differ from this run's in the last bits."""


@dataclass
class BatchReport:
    """What :func:`run_batch` returns.

    Attributes:
        out: the run folder.
        manifest: the final manifest (also in ``out/manifest.json``).
        computed: summaries of the shards computed by this call.
        skipped: shards already finished before this call.
        seconds: wall time of this call.
    """

    out: Path
    manifest: dict[str, Any]
    computed: list[ShardSummary] = field(default_factory=list)
    skipped: int = 0
    seconds: float = 0.0

    @property
    def counts(self) -> dict[str, Any]:
        return self.manifest["counts"]

    @property
    def complete(self) -> bool:
        return self.manifest["status"] == "complete"


def run_fingerprint(plan: InputPlan, spec: BatchSpec) -> str:
    """sha256 of the plan and of the settings that decide the rows."""
    payload = {"schema": SCHEMA_VERSION, "plan": plan.fingerprint(), "spec": spec.identity()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def run_batch(
    inputs: Sequence[str | Path] | InputPlan,
    out: str | Path,
    spec: BatchSpec | None = None,
    *,
    engine: str = "local",
    input_format: str = "auto",
    shard_size: int = DEFAULT_SHARD_SIZE,
    column: str | None = None,
    id_column: str | None = None,
    ray_address: str | None = None,
    num_workers: int | None = None,
    num_cpus_per_worker: float = 1.0,
    num_gpus_per_worker: float = 0.0,
    progress: Callable[[ShardSummary], None] | None = None,
    command: Sequence[str] | None = None,
) -> BatchReport:
    """Explain every image of ``inputs`` into Parquet shards under ``out``; resume if possible.

    Args:
        inputs: images, folders, globs, a text file of paths, Parquet files or WebDataset tars
            (:func:`~eigencam.batch.inputs.plan_inputs`), or a plan made by it (then
            ``input_format``, ``shard_size``, ``column`` and ``id_column`` are not used).
        out: the run folder.
        spec: what to compute (:class:`~eigencam.batch.worker.BatchSpec`; None: defaults).
        engine: ``local`` (this process) or ``ray`` (Ray Data actor pool).
        input_format, shard_size, column, id_column: see
            :func:`~eigencam.batch.inputs.plan_inputs`.
        ray_address, num_workers, num_cpus_per_worker, num_gpus_per_worker: the Ray engine's
            cluster and actor pool (:func:`~eigencam.batch.engines.run_ray`).
        progress: called with each finished shard's summary.
        command: the command line, recorded in the manifest.

    Returns:
        A :class:`BatchReport`. The manifest is written even when the run stops on an error
        or an interrupt (``status: incomplete``), before the error propagates.

    Raises:
        RunMismatchError: ``out`` holds a run with other inputs or settings.
        BatchInputError: the inputs cannot be planned.
        BatchError: the engine failed (finished shards are kept).
    """
    start = time.perf_counter()
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    try:
        import pyarrow  # noqa: F401  (the shard files are Parquet)
    except ImportError as err:
        raise MissingDependencyError("pyarrow", "batch", "eigencam batch") from err
    spec = (spec or BatchSpec()).validate()
    if isinstance(inputs, InputPlan):
        plan = inputs
    else:
        plan = plan_inputs(
            inputs,
            input_format=input_format,
            shard_size=shard_size,
            column=column,
            id_column=id_column,
        )
    entry = model_entry(spec.model)  # an unknown model fails here, before any work starts
    pretrained = bool(entry.pretrained or spec.weights)
    if not pretrained:
        warnings.warn(
            f"{spec.model}: no weights given, the model has random weights; its maps show the "
            "architecture, not what a trained model looks at (pass --weights FILE)",
            RandomWeightsWarning,
            stacklevel=2,
        )
    out = Path(out).absolute()
    fingerprint = run_fingerprint(plan, spec)
    previous = _check_folder(out, fingerprint, plan, spec)
    remove_stale_temp(out)
    done = {i: s for i, s in scan_shards(out).items() if s["run"] == fingerprint}
    pending = [s for s in plan.shards if s.index not in done]
    base = {
        "eigencam_version": _version(),
        "fingerprint": fingerprint,
        "command": list(command) if command is not None else None,
        "input": plan.describe() | {"unmatched": [list(u) for u in plan.unmatched]},
        "settings": spec.identity(),
        "model": {"pretrained": pretrained, "task": entry.task},
        "execution": {
            "engine": engine,
            "batch_size": spec.batch_size,
            "decode_threads": spec.decode_threads,
            "device": spec.device,
            "threads": spec.threads,
            "ray_address": ray_address,
            "num_workers": num_workers,
            "num_cpus_per_worker": num_cpus_per_worker,
            "num_gpus_per_worker": num_gpus_per_worker,
        },
        "versions": _versions(engine),
        "runs": list(previous.get("runs", [])) if previous else [],
    }
    write_json(out / MANIFEST, base | {"status": "running"})
    computed: list[ShardSummary] = []

    def on_summary(summary: ShardSummary) -> None:
        computed.append(summary)
        if progress is not None:
            progress(summary)

    engine_info: dict[str, Any] = {"engine": engine}
    status = "incomplete"
    try:
        if engine == "local":
            run_local(pending, spec, out, fingerprint, on_summary, info=engine_info)
        else:
            run_ray(
                pending,
                spec,
                out,
                fingerprint,
                on_summary,
                info=engine_info,
                address=ray_address,
                num_workers=num_workers,
                num_cpus_per_worker=num_cpus_per_worker,
                num_gpus_per_worker=num_gpus_per_worker,
            )
        status = "complete"
    finally:
        seconds = time.perf_counter() - start
        manifest = _final_manifest(
            out, plan, fingerprint, base, computed, len(done), seconds, engine_info, status
        )
        write_json(out / MANIFEST, manifest)
    return BatchReport(out, manifest, computed, len(done), seconds)


def _check_folder(
    out: Path, fingerprint: str, plan: InputPlan, spec: BatchSpec
) -> dict[str, Any] | None:
    """The previous manifest of this run, or None; refuses a folder holding another run."""
    manifest_path = out / MANIFEST
    previous = None
    if manifest_path.is_file():
        try:
            previous = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise RunMismatchError(
                f"{manifest_path} exists but cannot be read ({err}); use another --out"
            ) from err
        if previous.get("fingerprint") != fingerprint:
            raise RunMismatchError(
                f"{out} holds another batch run ({_differences(previous, plan, spec)}); use "
                "another --out, or rerun with that run's inputs and settings to resume it"
            )
        return previous
    foreign = [i for i, s in scan_shards(out).items() if s["run"] != fingerprint]
    if foreign:
        raise RunMismatchError(
            f"{out} holds shard files of another batch run ({shard_name(foreign[0])}...); use "
            "another --out"
        )
    return None


def _differences(previous: dict[str, Any], plan: InputPlan, spec: BatchSpec) -> str:
    diffs = []
    before = previous.get("settings", {})
    for key, value in spec.identity().items():
        if before.get(key) != value:
            diffs.append(f"{key}: {before.get(key)!r} there, {value!r} now")
    was = previous.get("input", {})
    now = plan.describe()
    for key in ("kind", "inputs", "column", "shard_size", "shards", "images"):
        if was.get(key) != now.get(key):
            diffs.append(f"input {key}: {was.get(key)!r} there, {now.get(key)!r} now")
    return "; ".join(diffs[:4]) or "its inputs' content differs"


def _final_manifest(
    out: Path,
    plan: InputPlan,
    fingerprint: str,
    base: dict[str, Any],
    computed: list[ShardSummary],
    skipped: int,
    seconds: float,
    engine_info: dict[str, Any],
    status: str,
) -> dict[str, Any]:
    import pyarrow.parquet as pq

    found = {i: s for i, s in scan_shards(out).items() if s["run"] == fingerprint}
    shard_rows, tables, layer = [], [], None
    numerics: list[dict[str, Any]] = []
    for shard in plan.shards:
        info = found.get(shard.index)
        if info is None:
            continue
        table = pq.read_table(
            info["path"], columns=["shard", "position", "id", "source", "status", "error", "layer"]
        )
        tables.append(table)
        statuses = table.column("status").to_pylist()
        ok = statuses.count("ok")
        if layer is None:
            layer = next((v for v in table.column("layer").to_pylist() if v), None)
        if info["numerics"] not in numerics:
            numerics.append(info["numerics"])
        shard_rows.append(
            {
                "index": shard.index,
                "file": f"shards/{shard_name(shard.index)}",
                "rows": len(statuses),
                "ok": ok,
                "failed": len(statuses) - ok,
            }
        )
    if len(numerics) > 1:
        warnings.warn(
            f"{out}: shards were computed with different numerics {numerics}; floats may differ "
            "in the last bits between them",
            MixedNumericsWarning,
            stacklevel=3,
        )
    if status == "complete" and len(found) < len(plan.shards):
        status = "incomplete"
    images = sum(s["rows"] for s in shard_rows)
    ok = sum(s["ok"] for s in shard_rows)
    fails = failures(tables, limit=MANIFEST_FAILURES)
    rows_now = sum(s.rows for s in computed)
    this_run = {
        "engine": engine_info,
        "shards_computed": len(computed),
        "shards_skipped": skipped,
        "images_computed": rows_now,
        "seconds": round(seconds, 3),
        "images_per_second": round(rows_now / seconds, 3) if seconds > 0 else None,
        "status": status,
    }
    return base | {
        "status": status,
        "layer": layer,
        "counts": {
            "images": images,
            "ok": ok,
            "failed": images - ok,
            "shards": len(plan.shards),
            "shards_done": len(shard_rows),
            "unmatched_inputs": len(plan.unmatched),
        },
        "failures": fails,
        "failures_listed": len(fails),
        "numerics": numerics,
        "shards": shard_rows,
        "runs": base["runs"] + [this_run],
    }


def _version() -> str:
    from eigencam import __version__

    return __version__


def _versions(engine: str) -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in ("torch", "torchvision", "numpy", "pillow", "pyarrow", "ray"):
        if pkg == "ray" and engine != "ray":
            continue
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out
