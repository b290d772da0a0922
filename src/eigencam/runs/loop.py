"""THE loop: pending inputs -> batches -> ``task.process`` -> ``folder.write`` -> progress ->
``task.finish``.

Every command (explain, compare, localize, attack, faithfulness, batch) is a :class:`Task` run
by :func:`run_task`. The loop keeps a couple of parts in flight (a task may return a
:class:`~concurrent.futures.Future` from ``process``, so writing or scoring overlaps the next
forward pass) and writes them in order. SIGTERM is handled like SIGINT: the parts that finished
are written, ``task.finish`` writes the summary of what finished, and the interrupt goes on
(exit code 130). A SIGKILL loses at most the parts in flight; ``--resume`` continues.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from eigencam.errors import ModelForwardError
from eigencam.runs.folder import RunFolder
from eigencam.runs.options import RunOptions
from eigencam.runs.source import Batch, failure


@dataclass
class Part:
    """What ``Task.process`` returns for one batch: the part to write (None: nothing to write)
    and how many of the batch's inputs worked and failed."""

    data: Any
    ok: int = 0
    failed: int = 0


@dataclass
class RunStats:
    """Where a run stands (what the progress bar and the summaries show).

    Attributes:
        total: inputs of the run, resumed ones included.
        resumed: inputs a resumed run had already recorded.
        ok, failed: inputs this call finished, and those of them that failed.
        seconds: wall time of this call.
        interrupted: the call was stopped (SIGINT, SIGTERM) before every input was done.
        stopped: failure records (``{"key", "file", "error"}``) of the batch whose error
            stopped the run (a model whose forward pass raises): summaries list them as
            failed. They are not written to the parts, so ``--resume`` tries them again.
    """

    total: int = 0
    resumed: int = 0
    ok: int = 0
    failed: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    stopped: list[dict[str, Any]] = field(default_factory=list)

    @property
    def done(self) -> int:
        """Inputs recorded so far, resumed ones included."""
        return self.resumed + self.ok + self.failed

    @property
    def pending(self) -> int:
        return self.total - self.done


class Task(Protocol):
    """One command's work; the loop does everything else."""

    def process(self, batch: Batch) -> Part | Future[Part]:
        """Explain and measure one batch; return its part (or a future of it)."""
        ...

    def finish(self, folder: RunFolder, stats: RunStats) -> Any:
        """Write the run's outputs from the folder's records; called also after an interrupt."""
        ...


def run_task(
    task: Task,
    folder: RunFolder,
    items: Sequence[Any],
    options: RunOptions,
    batches: Callable[[list[Any]], Iterable[Batch]],
    *,
    in_flight: int = 2,
) -> Any:
    """Run ``task`` over ``items`` into ``folder``.

    Args:
        task: the command's task.
        folder: its run folder (opened here, with ``options.resume``).
        items: every input of the run, each with a ``key`` (resumed ones included).
        options: the shared run options.
        batches: turns the pending items into batches
            (:func:`~eigencam.runs.source.image_batches` for images).
        in_flight: parts processed ahead of the one being written.

    Returns:
        What ``task.finish`` returns.
    """
    folder.open(resume=options.resume, overwrite=options.overwrite)
    done = folder.done_keys() if options.resume else set()
    pending = [it for it in items if it.key not in done]
    stats = RunStats(total=len(items), resumed=len(items) - len(pending))
    start = time.perf_counter()
    queue: deque[tuple[Any, Part | Future[Part]]] = deque()

    def write(block: bool) -> None:
        while queue and (block or len(queue) > in_flight or _ready(queue[0][1])):
            path, outcome = queue.popleft()
            part = outcome.result() if isinstance(outcome, Future) else outcome
            if part.data is not None:
                folder.write(part.data, path)
            stats.ok += part.ok
            stats.failed += part.failed
            if options.progress is not None:
                options.progress(stats)

    if options.progress is not None:
        options.progress(stats)
    try:
        with terminate_as_interrupt():
            try:
                for batch in batches(pending):
                    try:
                        queue.append((folder.part_path(), task.process(batch)))
                    except ModelForwardError as err:
                        stats.stopped = batch.failures + [
                            failure(item, str(err)) for _, item in batch.items
                        ]
                        raise
                    write(block=False)
                write(block=True)
            except BaseException:
                stats.interrupted = True
                _settle(queue)
                write(block=True)  # keep what finished before the interrupt
                raise
    finally:
        stats.seconds = time.perf_counter() - start
        stats.interrupted = stats.interrupted or stats.pending > 0
        try:
            result = task.finish(folder, stats)
        finally:
            folder.close()
    return result


def gather(futures: Sequence[Future], combine: Callable[[], Part]) -> Future[Part]:
    """A future of ``combine()``, resolved once every one of ``futures`` is done (their errors
    are re-raised): a part whose images are written by several threads."""
    result: Future[Part] = Future()
    remaining = [len(futures)]
    lock = threading.Lock()

    def settle(_: Any = None) -> None:
        with lock:
            remaining[0] -= 1
            if remaining[0] > 0:
                return
        try:
            for fut in futures:
                fut.result()
            result.set_result(combine())
        except BaseException as err:
            result.set_exception(err)

    if not futures:
        remaining[0] = 1
        settle()
    for fut in futures:
        fut.add_done_callback(settle)
    return result


def _ready(outcome: Part | Future[Part]) -> bool:
    return not isinstance(outcome, Future) or outcome.done()


def _settle(queue: deque) -> None:
    """Drop the parts whose work failed or was cancelled; wait for the others."""
    for item in list(queue):
        outcome = item[1]
        if isinstance(outcome, Future):
            with contextlib.suppress(BaseException):
                outcome.result()
            if outcome.cancelled() or outcome.exception() is not None:
                queue.remove(item)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt as SIGINT does (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
