"""A batch run from start to finish: plan, check the folder, run the loop, write the manifest.

The fingerprint hashes the shards and the settings that decide the rows
(:meth:`BatchSpec.identity`): a folder holding another run is refused, naming what differs, and
this run's shard files are finished work, skipped. ``manifest.json`` is written at the start
(``status: running``) and at the end from the shard files themselves, also after an error or an
interrupt: its counts are those of the whole run however often it was resumed.
"""

from __future__ import annotations

import json
import platform
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from eigencam import __version__
from eigencam.batch.engines import DEFAULT_RAY_TIMEOUT, ENGINES, LocalEngine, RayEngine
from eigencam.batch.inputs import DEFAULT_SHARD_SIZE, InputPlan, Shard, digest, plan_inputs
from eigencam.batch.shards import MANIFEST, remove_stale_temp, shard_folder
from eigencam.batch.worker import BatchSpec, ShardPart, ShardSummary, ShardWorker
from eigencam.errors import MissingDependencyError, RunMismatchError, check_choice
from eigencam.io.outputs import write_json
from eigencam.models import model_entry
from eigencam.models.entry import warn_random_weights
from eigencam.runs.folder import RUN_FILE, RunFolder
from eigencam.runs.loop import RunStats, run_task
from eigencam.runs.options import RunOptions

SCHEMA_VERSION = 1
# Failures listed in manifest.json (all of them are rows with status "error" in the shards).
MANIFEST_FAILURES = 1000


class MixedNumericsWarning(UserWarning):
    """A resumed run's shards were computed with other numerics (device, threads, batch size):
    their floats may differ from this run's in the last bits."""


@dataclass
class BatchReport:
    """What :func:`run_batch` returns: the run folder ``out``, the final ``manifest`` (also in
    ``out/manifest.json``), the summaries of the shards this call ``computed``, how many it
    ``skipped`` (finished before) and its wall time in ``seconds``."""

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
    return digest({"schema": SCHEMA_VERSION, "plan": plan.fingerprint(), "spec": spec.identity()})


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
    ray_timeout: float = DEFAULT_RAY_TIMEOUT,
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
        engine: ``local`` (this process) or ``ray`` (a Ray actor pool).
        input_format, shard_size, column, id_column: see
            :func:`~eigencam.batch.inputs.plan_inputs`.
        ray_address, num_workers, num_cpus_per_worker, num_gpus_per_worker, ray_timeout: the
            Ray engine's cluster and actor pool (:class:`~eigencam.batch.engines.RayEngine`).
        progress: called with each finished shard's summary.
        command: the command line, recorded in the manifest.

    Returns:
        A :class:`BatchReport`. The manifest is written also when the run stops on an error or
        an interrupt (``status: incomplete``), before the error propagates.

    Raises:
        RunMismatchError: ``out`` holds a run with other inputs or settings, or one written
            by another release.
        BatchInputError, InvalidParameterError: the inputs cannot be planned, a bad setting.
        BatchError: the engine failed (finished shards are kept).
    """
    start = time.perf_counter()
    check_choice("engine", engine, ENGINES)
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
        warn_random_weights(spec.model)
    out = Path(out).absolute()
    fingerprint = run_fingerprint(plan, spec)
    folder = shard_folder(out, fingerprint)
    previous = _check_folder(folder, fingerprint, plan, spec)
    worker = ShardWorker(spec, out, fingerprint)
    pool = (
        LocalEngine(worker)
        if engine == "local"
        else RayEngine(
            worker,
            ray_address,
            num_workers,
            num_cpus_per_worker,
            num_gpus_per_worker,
            ray_timeout=ray_timeout,
        )
    )
    base = {
        "eigencam_version": __version__,
        "fingerprint": fingerprint,
        "command": list(command) if command is not None else None,
        "input": plan.describe() | {"unmatched": [list(u) for u in plan.unmatched]},
        "settings": spec.identity(),
        "model": {"pretrained": pretrained, "task": entry.task},
        "execution": {"engine": engine}
        | {k: getattr(spec, k) for k in ("batch_size", "decode_threads", "device", "threads")}
        | {"ray_address": ray_address, "num_workers": num_workers}
        | {"num_cpus_per_worker": num_cpus_per_worker, "num_gpus_per_worker": num_gpus_per_worker},
        "versions": _versions(engine),
        "runs": list(previous.get("runs", [])) if previous else [],
    }
    task = BatchTask(plan, out, pool, base, progress, start)
    options = RunOptions(resume=True, progress=task.report)
    try:
        return run_task(
            task, folder, plan.shards, options, task.batches, in_flight=len(plan.shards)
        )
    except Exception as err:
        stop = pool.error(err)
        if stop is err:
            raise
        raise stop from err
    finally:
        pool.close()


class BatchTask:
    """The run loop's task of a batch run: one shard per ``process`` (the engine's), the
    manifest as ``finish``. ``base`` holds the manifest's fields known before the run,
    ``progress`` is called with each finished shard's summary, ``start`` is when the call began
    (``time.perf_counter``)."""

    def __init__(
        self,
        plan: InputPlan,
        out: Path,
        engine: LocalEngine | RayEngine,
        base: dict[str, Any],
        progress: Callable[[ShardSummary], None] | None,
        start: float,
    ) -> None:
        self.plan, self.out, self.engine, self.base = plan, out, engine, base
        self.progress, self.start = progress, start
        self.computed: list[ShardSummary] = []
        self.reported = 0

    def batches(self, shards: list[Shard]) -> Iterator[Any]:
        """The pending shards as the engine takes them, once the folder is ours."""
        remove_stale_temp(self.out)
        write_json(self.out / MANIFEST, self.base | {"status": "running"})
        yield from self.engine.batches(shards)

    def process(self, batch: Any) -> ShardPart | Future[ShardPart]:
        part = self.engine.process(batch)
        if isinstance(part, Future):
            part.add_done_callback(self._done)
        else:
            self.computed.append(part.summary)  # type: ignore[arg-type]
        return part

    def _done(self, fut: Future[ShardPart]) -> None:
        if not fut.cancelled() and fut.exception() is None:
            self.computed.append(fut.result().summary)  # type: ignore[arg-type]

    def report(self, stats: RunStats) -> None:
        """The loop's progress hook: report the shards finished since the last call."""
        new, self.reported = self.computed[self.reported :], len(self.computed)
        for summary in new if self.progress is not None else []:
            self.progress(summary)  # type: ignore[misc]

    def finish(self, folder: RunFolder, stats: RunStats) -> BatchReport:
        """Write ``manifest.json`` from the shard files (also after an error or interrupt)."""
        self.report(stats)
        seconds = time.perf_counter() - self.start
        manifest = self.manifest(folder, stats, seconds)
        write_json(folder.path / MANIFEST, manifest)
        return BatchReport(folder.path, manifest, list(self.computed), stats.resumed, seconds)

    def manifest(self, folder: RunFolder, stats: RunStats, seconds: float) -> dict[str, Any]:
        codec, base = folder.codec, self.base
        found = {}
        for path in folder.parts():
            info = codec.info(path)  # type: ignore[attr-defined]
            if info is not None and info["run"] == base["fingerprint"]:
                found[info["index"]] = (path, info)
        shards, numerics, fails, layer = [], [], [], None
        columns = ["shard", "position", "id", "source", "status", "error", "layer"]
        for index in sorted(i for i in found if i < len(self.plan.shards)):
            path, info = found[index]
            cols = codec.read(path, columns).to_pydict()
            ok, rows = cols["status"].count("ok"), len(cols["status"])
            layer = layer or next((v for v in cols["layer"] if v), None)
            if info["numerics"] not in numerics:
                numerics.append(info["numerics"])
            for i, status in enumerate(cols["status"]):
                if status != "ok" and len(fails) < MANIFEST_FAILURES:
                    fails.append({c: cols[c][i] for c in columns[:4]} | {"error": cols["error"][i]})
            file = f"{folder.parts_dir}/{path.name}"
            shards.append({"index": index, "file": file, "rows": rows, "ok": ok})
            shards[-1]["failed"] = rows - ok
        if len(numerics) > 1:
            warnings.warn(
                f"{folder.path}: shards were computed with different numerics {numerics}; "
                "floats may differ in the last bits between them",
                MixedNumericsWarning,
                stacklevel=2,
            )
        complete = not stats.interrupted and len(found) >= len(self.plan.shards)
        status = "complete" if complete else "incomplete"
        images, ok = sum(s["rows"] for s in shards), sum(s["ok"] for s in shards)
        rows_now = sum(s.rows for s in self.computed)
        this_run = {
            "engine": self.engine.info,
            "shards_computed": len(self.computed),
            "shards_skipped": stats.resumed,
            "images_computed": rows_now,
            "seconds": round(seconds, 3),
            "images_per_second": round(rows_now / seconds, 3) if seconds > 0 else None,
            "status": status,
        }
        counts = {"images": images, "ok": ok, "failed": images - ok}
        counts |= {"shards": len(self.plan.shards), "shards_done": len(shards)}
        counts["unmatched_inputs"] = len(self.plan.unmatched)
        return base | {
            "status": status,
            "layer": layer,
            "counts": counts,
            "failures": fails,
            "failures_listed": len(fails),
            "numerics": numerics,
            "shards": shards,
            "runs": base["runs"] + [this_run],
        }


def _check_folder(
    folder: RunFolder, fingerprint: str, plan: InputPlan, spec: BatchSpec
) -> dict[str, Any] | None:
    """The previous manifest of this run, or None; refuses a folder holding another run."""
    manifest_path = folder.path / MANIFEST
    if manifest_path.is_file():
        try:
            previous = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise RunMismatchError(
                f"{manifest_path} exists but cannot be read ({err}); use another --out"
            ) from err
        if previous.get("fingerprint") != fingerprint:
            raise RunMismatchError(
                f"{folder.path} holds another batch run ({_differences(previous, plan, spec)}); "
                "use another --out, or rerun with that run's inputs and settings to resume it"
            )
        if not (folder.path / RUN_FILE).is_file():
            release = previous.get("eigencam_version", "0.1.x")
            raise RunMismatchError(
                f"{folder.path} was written by eigencam {release}, whose batch runs eigencam "
                f"{__version__} does not resume: finish it with eigencam {release}, or use "
                "another --out"
            )
        return previous
    infos = [folder.codec.info(p) for p in folder.parts()]  # type: ignore[attr-defined]
    foreign = [i for i in infos if i is not None and i["run"] != fingerprint]
    if foreign:
        raise RunMismatchError(
            f"{folder.path} holds shard files of another batch run (part-"
            f"{foreign[0]['index']:05d}.parquet...); use another --out"
        )
    return None


def _differences(previous: dict[str, Any], plan: InputPlan, spec: BatchSpec) -> str:
    before, was, now = previous.get("settings", {}), previous.get("input", {}), plan.describe()
    diffs = [
        f"{key}: {before.get(key)!r} there, {value!r} now"
        for key, value in spec.identity().items()
        if before.get(key) != value
    ]
    diffs += [
        f"input {key}: {was.get(key)!r} there, {now.get(key)!r} now"
        for key in ("kind", "inputs", "column", "shard_size", "shards", "images")
        if was.get(key) != now.get(key)
    ]
    return "; ".join(diffs[:4]) or "its inputs' content differs"


def _versions(engine: str) -> dict[str, str | None]:
    packages = ["torch", "torchvision", "numpy", "pillow", "pyarrow"] + ["ray"] * (engine == "ray")
    return {"python": platform.python_version()} | {p: _version(p) for p in packages}


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
