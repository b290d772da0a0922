"""The two engines that run a plan's pending shards: one process, or a Ray cluster.

Both call the same :class:`~eigencam.batch.worker.ShardWorker` on the same shards, so they
write the same files:

- **local**: one worker in this process; the next shard is read by a background thread while
  the current one is explained, and each shard's images are decoded by ``decode_threads``
  threads (:func:`eigencam.runs.source.iter_batches`).
- **ray**: a Ray Data pipeline. :class:`ShardSource` is a Ray datasource with one read task
  per pending shard (I/O, scheduled anywhere in the cluster, prefetched under Ray's
  back-pressure); each task yields the shard as a single row, which Ray never splits, so a
  shard reaches exactly one call. ``map_batches`` runs :class:`ShardActor` on an actor pool
  (``ActorPoolStrategy``): each actor loads the model once (on its GPU with
  ``num_gpus_per_worker``), explains whole shards and writes each shard file atomically
  itself; only a few numbers per shard travel back to the driver. The driver starts a local
  Ray (no dashboard, no usage statistics) unless it is given a cluster address or Ray is
  already initialised, and shuts down only what it started.

Ray's stock readers (``read_parquet``, ``read_webdataset``, ``read_binary_files``) stream rows
without their position in the input, in blocks of their own size: they can neither skip the
rows of finished shards exactly nor hand a worker a whole shard, which the atomic per-shard
output and the identical results of both engines need. :class:`ShardSource` plugs our shard
reader (:func:`eigencam.batch.inputs.read_shard`) into Ray Data's datasource API instead.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from eigencam.batch.inputs import Shard, ShardData, read_shard
from eigencam.batch.worker import BatchSpec, ShardSummary, ShardWorker
from eigencam.errors import BatchError, EigenCAMError, MissingDependencyError

ENGINES = ("local", "ray")

OnSummary = Callable[[ShardSummary], None]


# ---------------------------------------------------------------------------------------------
# local


def run_local(
    shards: Sequence[Shard],
    spec: BatchSpec,
    out: str | Path,
    fingerprint: str,
    on_summary: OnSummary | None = None,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Explain and write ``shards`` in this process.

    Args:
        shards: the pending shards.
        spec: the run's settings.
        out: the run folder.
        fingerprint: the run's fingerprint, stored in each shard file.
        on_summary: called with each finished shard's summary.
        info: filled with the engine's description for the manifest (device, threads), also
            when the run fails.

    Returns:
        ``info``.
    """
    import torch

    threads_before = torch.get_num_threads()
    info = {} if info is None else info
    info.update(engine="local", workers=1)
    if not shards:
        return info
    try:
        worker = ShardWorker.load(spec)
        info.update(device=str(worker.device), threads=torch.get_num_threads())
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="eigencam-read") as reader:
            ahead = reader.submit(read_shard, shards[0])
            for k in range(len(shards)):
                data = ahead.result()
                if k + 1 < len(shards):
                    ahead = reader.submit(read_shard, shards[k + 1])
                summary = worker.run(data, out, fingerprint)
                if on_summary is not None:
                    on_summary(summary)
    finally:
        torch.set_num_threads(threads_before)
    return info


# ---------------------------------------------------------------------------------------------
# ray


def _import_ray():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
        import ray.data
    except ImportError as err:
        raise MissingDependencyError("ray[data]", "ray", "the Ray engine") from err
    return ray


class ShardSource:
    """A Ray Data datasource with one read task per shard, each yielding the shard as one row.

    Built lazily as a subclass of ``ray.data.Datasource`` (:func:`shard_datasource`) so that
    importing eigencam never imports Ray.
    """


def shard_datasource(shards: Sequence[Shard]):
    """A ``ray.data.Datasource`` reading ``shards`` (one read task and one row per shard)."""
    _import_ray()
    return _datasource_class()(list(shards))


_DATASOURCE = None


def _datasource_class():
    global _DATASOURCE
    if _DATASOURCE is None:
        from ray.data import Datasource, ReadTask
        from ray.data.block import BlockMetadata

        class _ShardSource(Datasource, ShardSource):
            def __init__(self, shards: list[Shard]) -> None:
                super().__init__()
                self.shards = shards

            def get_name(self) -> str:
                return "EigenCAMShards"

            def estimate_inmemory_data_size(self) -> int | None:
                return None

            def get_read_tasks(self, parallelism: int, per_task_row_limit=None, data_context=None):
                tasks = []
                for shard in self.shards:
                    meta = BlockMetadata(
                        num_rows=1, size_bytes=None, exec_stats=None, input_files=None
                    )
                    tasks.append(ReadTask(_reader(shard), meta))
                return tasks

        _DATASOURCE = _ShardSource
    return _DATASOURCE


def _reader(shard: Shard):
    def read():
        yield read_shard(shard).to_arrow()

    return read


class ShardActor:
    """The Ray actor of the pool: one model, whole shards in, one summary row per shard out.

    :func:`actor_class` makes a subclass holding the run's settings as class attributes, so
    the actor's constructor takes no arguments (nothing to keep in Ray's object store for
    restarts). An eigencam error (a wrong layer name, a missing weights file) does not cross
    Ray's process boundary as itself, so it is returned as a ``fatal`` summary row instead and
    re-raised by the driver.
    """

    spec: BatchSpec
    out: str
    fingerprint: str

    def __init__(self) -> None:
        self.worker: ShardWorker | None = None
        self.fatal: EigenCAMError | None = None
        try:
            self.worker = ShardWorker.load(self.spec)
        except EigenCAMError as err:
            self.fatal = err

    def __call__(self, batch):
        import pyarrow as pa

        summaries = []
        for r in range(batch.num_rows):
            data = ShardData.from_arrow(batch, r)
            try:
                if self.worker is None:
                    raise self.fatal or BatchError("the worker did not start")
                summaries.append(self.worker.run(data, self.out, self.fingerprint).as_dict())
            except EigenCAMError as err:
                summaries.append(_fatal_row(data.shard, err))
        return pa.Table.from_pylist(summaries, schema=_summary_schema())


def _summary_schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("shard", pa.int64()),
            ("rows", pa.int64()),
            ("ok", pa.int64()),
            ("failed", pa.int64()),
            ("seconds", pa.float64()),
            ("layer", pa.string()),
            ("path", pa.string()),
            ("fatal_type", pa.string()),
            ("fatal", pa.string()),
        ]
    )


def _fatal_row(shard: int, err: EigenCAMError) -> dict[str, Any]:
    return {
        "shard": shard,
        "rows": 0,
        "ok": 0,
        "failed": 0,
        "seconds": 0.0,
        "layer": None,
        "path": "",
        "fatal_type": type(err).__name__,
        "fatal": str(err),
    }


def _rebuild_error(name: str, message: str) -> EigenCAMError:
    """An eigencam error of the named class carrying ``message`` (it came from an actor)."""
    from eigencam import errors

    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, EigenCAMError)):
        return BatchError(f"{name}: {message}")
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    return err


def actor_class(spec: BatchSpec, out: str, fingerprint: str) -> type[ShardActor]:
    """A :class:`ShardActor` subclass bound to a run (pickled by value for the workers)."""
    return type(
        "EigenCAMShardActor",
        (ShardActor,),
        {
            "spec": spec,
            "out": out,
            "fingerprint": fingerprint,
        },
    )


def run_ray(
    shards: Sequence[Shard],
    spec: BatchSpec,
    out: str | Path,
    fingerprint: str,
    on_summary: OnSummary | None = None,
    *,
    address: str | None = None,
    num_workers: int | None = None,
    num_cpus_per_worker: float = 1.0,
    num_gpus_per_worker: float = 0.0,
    num_cpus: int | None = None,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Explain and write ``shards`` with Ray Data on an actor pool.

    Args:
        shards: the pending shards.
        spec: the run's settings (``threads`` defaults to the actor's CPUs on CPU).
        out: the run folder (on a cluster: a path every node sees, e.g. a shared filesystem).
        fingerprint: the run's fingerprint, stored in each shard file.
        on_summary: called in the driver for each finished shard.
        address: a Ray cluster (``auto``, ``ray://host:10001``, ``host:6379``); None starts a
            local Ray with ``num_cpus`` CPUs (default: all) unless Ray is already initialised.
        num_workers: actors (None: as many as the cluster's CPUs, or GPUs with
            ``num_gpus_per_worker``, allow).
        num_cpus_per_worker: CPUs reserved per actor (decoding and, on CPU, the model).
        num_gpus_per_worker: GPUs per actor (fractions share a GPU); 0 runs on CPU.
        num_cpus: CPUs of the local Ray this starts.
        info: filled with the engine's description for the manifest, also when the run fails.

    Returns:
        ``info``.

    Raises:
        BatchError: the Ray job failed (the finished shards are kept).
        EigenCAMError: a worker could not start (bad layer, model, weights...), re-raised.
    """
    for name, value in (
        ("num_cpus_per_worker", num_cpus_per_worker),
        ("num_gpus_per_worker", num_gpus_per_worker),
    ):
        if not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    if num_workers is not None and (not isinstance(num_workers, int) or num_workers < 1):
        raise ValueError(f"num_workers must be an integer >= 1, got {num_workers!r}")
    ray = _import_ray()
    started = False
    info = {} if info is None else info
    info.update(engine="ray", address=address)
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {
            "log_to_driver": False,
            "logging_level": logging.ERROR,
            "configure_logging": True,
        }
        quiet = logging.getLogger("ray")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # Ray's start-up notices would garble the progress bar
        try:
            if address:
                ray.init(address=address, **kwargs)
            else:
                ray.init(
                    num_cpus=num_cpus or os.cpu_count() or 1,
                    include_dashboard=False,
                    runtime_env={"env_vars": worker_env()},
                    **kwargs,
                )
        finally:
            quiet.setLevel(level)
        started = True
    info["started_local_ray"] = started and not address
    try:
        resources = ray.cluster_resources()
        n = num_workers or _default_workers(resources, num_cpus_per_worker, num_gpus_per_worker)
        if spec.threads is None and not num_gpus_per_worker and spec.device in (None, "cpu"):
            spec = replace(spec, threads=max(1, int(num_cpus_per_worker)))
        if not num_gpus_per_worker and spec.device is None:
            spec = replace(spec, device="cpu")
        info.update(
            workers=n,
            num_cpus_per_worker=num_cpus_per_worker,
            num_gpus_per_worker=num_gpus_per_worker,
            threads=spec.threads,
            cluster={k: resources.get(k) for k in ("CPU", "GPU", "memory")},
        )
        if not shards:
            return info
        _run_dataset(
            ray,
            shards,
            spec,
            out,
            fingerprint,
            on_summary,
            n,
            num_cpus_per_worker,
            num_gpus_per_worker,
        )
    finally:
        if started:
            ray.shutdown()
    return info


def _run_dataset(ray, shards, spec, out, fingerprint, on_summary, n, cpus, gpus) -> None:
    ctx = ray.data.DataContext.get_current()
    saved = (ctx.enable_progress_bars, ctx.print_on_execution_start, ctx.enable_auto_log_stats)
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    # Ray Data logs a failing task's traceback; the driver reports the error itself.
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)
    try:
        ds = ray.data.read_datasource(
            shard_datasource(shards),
            override_num_blocks=len(shards),
            # Reading is I/O: no CPU reserved, so the actors can take every CPU without
            # starving the readers; at most two shards ahead per actor are read.
            num_cpus=0,
            concurrency=max(1, min(len(shards), 2 * n)),
        )
        ds = ds.map_batches(
            actor_class(spec, str(out), fingerprint),
            batch_size=1,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=n),
            num_cpus=cpus,
            num_gpus=gpus or None,
        )
        for batch in ds.iter_batches(batch_size=1, batch_format="pyarrow", prefetch_batches=0):
            for row in batch.to_pylist():
                fatal_type, fatal = row.pop("fatal_type"), row.pop("fatal")
                if fatal_type:
                    raise _rebuild_error(fatal_type, fatal)
                if on_summary is not None:
                    on_summary(ShardSummary(**row))
    except EigenCAMError:
        raise
    except Exception as err:
        cause = _eigencam_cause(err)
        if cause is not None:
            raise cause from None
        raise BatchError(
            f"the Ray run stopped: {_root_message(err)}. Finished shards are kept; rerun the "
            "same command to resume."
        ) from err
    finally:
        ctx.enable_progress_bars, ctx.print_on_execution_start, ctx.enable_auto_log_stats = saved


def _default_workers(resources: dict[str, float], cpus: float, gpus: float) -> int:
    if gpus:
        total = resources.get("GPU", 0.0)
        if total < gpus:
            raise BatchError(
                f"num_gpus_per_worker={gpus} but the Ray cluster has {total:g} GPU(s); add GPU "
                "nodes or run on CPU (num_gpus_per_worker 0)"
            )
        return max(1, int(total // gpus))
    total = resources.get("CPU", 1.0)
    return max(1, int(total // cpus)) if cpus else max(1, int(total))


def _eigencam_cause(err: BaseException) -> BaseException | None:
    """The eigencam error a Ray exception wraps (an actor's constructor failing), if any."""
    seen: set[int] = set()
    stack: list[Any] = [err]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, EigenCAMError):
            return e
        stack += [getattr(e, "cause", None), e.__cause__, e.__context__]
        if hasattr(e, "as_instanceof_cause"):
            try:
                inst = e.as_instanceof_cause()
            except Exception:  # not every Ray error can rebuild its cause
                inst = None
            if inst is not e:
                stack.append(inst)
    return None


def _root_message(err: BaseException) -> str:
    """The original ``SomeError: message`` line of a Ray error's remote traceback."""
    texts = [str(err)]
    cause = getattr(err, "cause", None)
    if cause is not None:
        texts.append(str(cause))
    for text in texts:
        lines = [ln.strip() for ln in text.splitlines()]
        found = [
            ln for ln in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt): ", ln)
        ]
        if found:
            return found[-1]
    first = str(err).strip().splitlines()
    return f"{type(err).__name__}: {first[0] if first else ''}"


def worker_env() -> dict[str, str]:
    """PYTHONPATH for the workers of a local Ray: this eigencam first, then the driver's path.

    Local Ray workers start in another folder; without this they could import another
    installed eigencam, or fail to import a model factory that sits beside the command.
    """
    import eigencam

    here = str(Path(eigencam.__file__).resolve().parents[1])
    parts = [here, os.getcwd()]
    existing = os.environ.get("PYTHONPATH")
    if existing:
        parts.append(existing)
    return {"PYTHONPATH": os.pathsep.join(parts)}
