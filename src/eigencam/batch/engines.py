"""The two engines of ``eigencam batch``: where the run loop's ``process`` step runs.

A batch run is :func:`eigencam.runs.run_task` over the plan's shards (one shard per batch); an
engine supplies the loop's ``batches`` and ``process``, and both call
:meth:`ShardWorker.process <eigencam.batch.worker.ShardWorker.process>` on the same shards, so
they write the same files. **local** (:class:`LocalEngine`): one worker in this process, the
next shard read by a background thread while the current one is explained. **ray**
(:class:`RayEngine`): a pool of Ray actors, each holding one worker; a shard goes to the least
busy actor with a read task (I/O, no CPU reserved) that reads its images, the actor explains
and writes the whole shard, and only its summary travels back (docs/scale.md).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

import eigencam
from eigencam import errors
from eigencam.batch.inputs import Shard, ShardData, read_shard
from eigencam.batch.worker import ShardPart, ShardWorker
from eigencam.errors import BatchError, EigenCAMError, MissingDependencyError, check
from eigencam.runs.loop import gather

DEFAULT_RAY_TIMEOUT = 60.0
"""Seconds :class:`RayEngine` waits for a cluster given by address to accept a connection."""


class LocalEngine:
    """``worker`` in this process (torch's thread count is restored at :meth:`close`)."""

    def __init__(self, worker: ShardWorker) -> None:
        self.worker = worker
        self.info: dict[str, Any] = {"engine": "local", "workers": 1}
        self._threads = torch.get_num_threads()

    def batches(self, shards: Sequence[Shard]) -> Iterator[ShardData]:
        """The shards' images, each shard read while the previous one is explained."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="eigencam-read") as reader:
            ahead = [reader.submit(read_shard, s) for s in shards[:1]]
            for k in range(len(shards)):
                data = ahead.pop().result()
                if k + 1 < len(shards):
                    ahead.append(reader.submit(read_shard, shards[k + 1]))
                yield data

    def process(self, data: ShardData) -> ShardPart:
        part = self.worker.process(data)
        self.info.update(device=str(self.worker.device), threads=torch.get_num_threads())
        return part

    def error(self, err: BaseException) -> BaseException:
        return err

    def close(self) -> None:
        torch.set_num_threads(self._threads)


class ShardActor:
    """A Ray actor holding one :class:`~eigencam.batch.worker.ShardWorker`. An eigencam error
    does not cross Ray's process boundary as itself: it comes back as ``(class name, message)``,
    re-raised by the driver (:func:`rebuild_error`)."""

    def __init__(self, worker: ShardWorker) -> None:
        self.worker = worker

    def process(self, data: ShardData) -> ShardPart | tuple[str, str]:
        try:
            return self.worker.process(data)  # the first shard loads the model
        except EigenCAMError as err:
            return type(err).__name__, str(err)


class RayEngine:
    """A Ray actor pool, each actor holding a copy of ``worker``.

    Args:
        worker: the run's worker (not loaded: each actor loads its copy).
        address: a Ray cluster (``auto``, ``ray://host:10001``, ``host:6379``); None starts a
            local Ray with all CPUs (no dashboard, no usage statistics) unless Ray is already
            initialised. Only a Ray started here is shut down.
        num_workers: actors (None: as many as the cluster's CPUs, or GPUs, allow).
        num_cpus_per_worker: CPUs reserved per actor; on CPU also its torch threads unless the
            spec sets ``threads``.
        num_gpus_per_worker: GPUs per actor (fractions share a GPU); 0 runs on CPU.
        ray_timeout: seconds to wait for the cluster at ``address`` to accept a connection
            (then a :class:`~eigencam.errors.BatchError`).

    Raises:
        InvalidParameterError: a pool argument out of range (before Ray starts).
    """

    def __init__(
        self,
        worker: ShardWorker,
        address: str | None = None,
        num_workers: int | None = None,
        num_cpus_per_worker: float = 1.0,
        num_gpus_per_worker: float = 0.0,
        ray_timeout: float = DEFAULT_RAY_TIMEOUT,
    ) -> None:
        for name, value in (("num_cpus_per_worker", num_cpus_per_worker),
                            ("num_gpus_per_worker", num_gpus_per_worker)):  # fmt: skip
            ok = isinstance(value, (int, float)) and value >= 0
            check(ok, f"{name} must be a number >= 0, got {value!r}")
        ok = isinstance(ray_timeout, (int, float)) and ray_timeout > 0
        check(ok, f"ray_timeout must be a number of seconds > 0, got {ray_timeout!r}")
        self.ray_timeout = float(ray_timeout)
        ok = num_workers is None or (isinstance(num_workers, int) and num_workers >= 1)
        check(ok, f"num_workers must be an integer >= 1, got {num_workers!r}")
        self.worker, self.address, self.num_workers = worker, address, num_workers
        self.cpus, self.gpus = num_cpus_per_worker, num_gpus_per_worker
        self.info: dict[str, Any] = {"engine": "ray", "address": address}
        self.ray: Any = None
        self.started = False
        self.actors: list[Any] = []
        self.busy: list[int] = []
        self.lock = threading.Condition()

    def batches(self, shards: Sequence[Shard]) -> Iterable[Shard]:
        """Start (or join) Ray; the shards go to the actors as they are (they read them)."""
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        try:
            import ray
        except ImportError as err:
            raise MissingDependencyError("ray[data]", "ray", "the Ray engine") from err
        self.ray = ray
        if not ray.is_initialized():
            quiet = logging.getLogger("ray")
            level = quiet.level
            quiet.setLevel(logging.ERROR)  # Ray's start-up notices would garble the progress bar
            local = {
                "num_cpus": os.cpu_count() or 1,
                "include_dashboard": False,
                "runtime_env": {"env_vars": worker_env()},
            }
            if self.address:  # ray.init waits forever for a head that is not there
                wait_for_cluster(self.address, self.ray_timeout)
            try:
                ray.init(
                    **({"address": self.address} if self.address else local),
                    log_to_driver=False,
                    logging_level=logging.ERROR,
                    configure_logging=True,
                )
            finally:
                quiet.setLevel(level)
            self.started = True
        resources = ray.cluster_resources()
        n = self.num_workers or default_workers(resources, self.cpus, self.gpus)
        spec = self.worker.spec
        if spec.threads is None and not self.gpus and spec.device in (None, "cpu"):
            spec = replace(spec, threads=max(1, int(self.cpus)))
        if not self.gpus and spec.device is None:
            spec = replace(spec, device="cpu")
        folder = self.worker.folder
        self.worker = ShardWorker(spec, folder.path, folder.codec.fingerprint)
        self.info.update(
            started_local_ray=self.started and not self.address,
            workers=n,
            num_cpus_per_worker=self.cpus,
            num_gpus_per_worker=self.gpus,
            threads=spec.threads,
            cluster={k: resources.get(k) for k in ("CPU", "GPU", "memory")},
        )
        return shards

    def process(self, shard: Shard) -> Future[ShardPart]:
        """Send ``shard`` to the least busy actor (the pool starts with the first shard); wait
        while every actor has two shards already."""
        ray = self.ray
        if not self.actors:
            actor = ray.remote(
                num_cpus=self.cpus, num_gpus=self.gpus, max_restarts=2, max_task_retries=2
            )(ShardActor)
            self.actors = [actor.remote(self.worker) for _ in range(self.info["workers"])]
            self.busy = [0] * len(self.actors)
            self.read = ray.remote(num_cpus=0)(read_shard)
        with self.lock:
            self.lock.wait_for(lambda: min(self.busy) < 2)
            k = self.busy.index(min(self.busy))
            self.busy[k] += 1
        sent = self.actors[k].process.remote(self.read.remote(shard)).future()
        sent.add_done_callback(lambda _: self._release(k))
        return gather([sent], lambda: _shard_part(sent.result()))

    def _release(self, k: int) -> None:
        with self.lock:
            self.busy[k] -= 1
            self.lock.notify_all()

    def error(self, err: BaseException) -> BaseException:
        """The error the driver raises for ``err``: an eigencam error (an actor's is rebuilt by
        :func:`rebuild_error`) as itself, anything else of Ray's as a
        :class:`~eigencam.errors.BatchError`."""
        if isinstance(err, EigenCAMError) or not isinstance(err, Exception):
            return err
        return BatchError(
            f"the Ray run stopped: {_root_message(err)}. Finished shards are kept; rerun the "
            "same command to resume."
        )

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []
        if self.started:
            self.ray.shutdown()


ENGINES = {"local": LocalEngine, "ray": RayEngine}


def wait_for_cluster(address: str, timeout: float) -> None:
    """Wait up to ``timeout`` seconds for the Ray head at ``address`` to accept a connection;
    a :class:`~eigencam.errors.BatchError` (one line: the address and the fix) if none does."""
    endpoint = _endpoint(address)
    if endpoint is None:  # no host:port to try: Ray reports it itself
        return
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            with socket.create_connection(endpoint, timeout=max(0.05, min(left, 5.0))):
                return
        except OSError as err:
            reason = os.strerror(err.errno) if err.errno else "no answer"
        if left <= 0:
            raise BatchError(
                f"no Ray cluster answered at {address} within {timeout:g} s ({reason}); start "
                "one there (ray start --head), fix --ray-address, or wait longer with "
                "--ray-timeout SECONDS"
            )
        time.sleep(min(0.2, max(left, 0.0)))


def _endpoint(address: str) -> tuple[str, int] | None:
    """(host, port) of a Ray address (``host:6379``, ``ray://host:10001``, ``auto``)."""
    if address.startswith("ray://"):
        address = address[len("ray://") :]
    elif address == "auto":  # the running cluster Ray would pick, if it records one
        try:
            from ray._private.services import canonicalize_bootstrap_address

            address = canonicalize_bootstrap_address("auto") or ""
        except Exception:
            return None
    host, sep, port = address.rpartition(":")
    return (host.strip("[]"), int(port)) if sep and host and port.isdigit() else None


def default_workers(resources: dict[str, float], cpus: float, gpus: float) -> int:
    """Actors a cluster of ``resources`` holds with ``cpus`` and ``gpus`` per actor (a
    :class:`~eigencam.errors.BatchError` when it has fewer GPUs than one actor asks)."""
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


def _shard_part(value: ShardPart | tuple[str, str]) -> ShardPart:
    if isinstance(value, tuple):
        raise rebuild_error(*value)
    return value


def rebuild_error(name: str, message: str) -> EigenCAMError:
    """An eigencam error of the named class carrying ``message`` (it came from an actor)."""
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, EigenCAMError)):
        return BatchError(f"{name}: {message}")
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    return err


def _root_message(err: BaseException) -> str:
    """The original ``SomeError: message`` line of a Ray error's remote traceback."""
    for text in (str(err), str(getattr(err, "cause", None) or "")):
        pattern = r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt): "
        found = [ln.strip() for ln in text.splitlines() if re.match(pattern, ln.strip())]
        if found:
            return found[-1]
    first = str(err).strip().splitlines()
    return f"{type(err).__name__}: {first[0] if first else ''}"


def worker_env() -> dict[str, str]:
    """PYTHONPATH for the workers of a local Ray, which start in another folder: this eigencam
    first (not another installed one), then the driver's folder (a model factory beside the
    command) and path."""
    parts = [str(Path(eigencam.__file__).resolve().parents[1]), os.getcwd()]
    if os.environ.get("PYTHONPATH"):
        parts.append(os.environ["PYTHONPATH"])
    return {"PYTHONPATH": os.pathsep.join(parts)}
