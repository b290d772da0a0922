"""The one run loop every command uses.

A command is a *task* (:class:`~eigencam.runs.loop.Task`): it turns one batch of inputs into one
*part* of records (``process``) and the run folder's records into the command's outputs
(``finish``). :func:`~eigencam.runs.loop.run_task` does everything else, the same way for every
command: it opens the :class:`~eigencam.runs.folder.RunFolder` (identity, resume, refusal of a
folder written by another run or release), skips the inputs a resumed run has recorded, decodes
images in threads, calls the task, writes each part atomically, moves the progress bar, and
calls ``finish`` also when the run is interrupted (SIGINT or SIGTERM), so the summary of what
finished is always written.

Isolation policy (:mod:`eigencam.runs.step`): an :class:`~eigencam.errors.EigenCAMError` raised
while explaining one image is that image's failure, recorded with its message; any other
exception is a bug and stops the run with its traceback. Finished parts are kept either way.
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
