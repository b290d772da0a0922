"""The one run loop every command uses.

A command is a :class:`~eigencam.runs.loop.Task` (``process`` turns one batch into one part of
records, ``finish`` turns the folder's records into the command's outputs);
:func:`~eigencam.runs.loop.run_task` does the rest the same way for every command (the
:class:`~eigencam.runs.folder.RunFolder`, resume, threaded decoding, atomic parts, progress,
``finish`` also on SIGINT or SIGTERM). Isolation (:mod:`eigencam.runs.step`): an
:class:`~eigencam.errors.EigenCAMError` on one image is that image's failure; anything else is a
bug and stops the run with its traceback.
"""

from eigencam.runs.folder import RunFolder, RunRecords
from eigencam.runs.loop import Batch, RunStats, Task, run_task
from eigencam.runs.options import RunOptions
from eigencam.runs.source import LoadedImage, LoadFailure, image_batches, iter_batches
from eigencam.runs.step import isolate

__all__ = [
    "Batch",
    "LoadFailure",
    "LoadedImage",
    "RunFolder",
    "RunOptions",
    "RunRecords",
    "RunStats",
    "Task",
    "image_batches",
    "isolate",
    "iter_batches",
    "run_task",
]
