"""Explain datasets larger than one machine: ``eigencam batch``, locally or on Ray.

The input is cut into deterministic shards (:mod:`~eigencam.batch.inputs`); a run is the one run
loop (:func:`eigencam.runs.run_task`) over them, each shard one Parquet part of the run folder
(:mod:`~eigencam.batch.shards`) written by a worker (:mod:`~eigencam.batch.worker`) in this
process or on Ray actors (:mod:`~eigencam.batch.engines`); a killed run resumes
(:mod:`~eigencam.batch.run`). Ray and pyarrow are imported only when used.

Example:
    >>> from eigencam.batch import BatchSpec, run_batch, read_results
    >>> report = run_batch(["photos/"], "runs/photos", BatchSpec(model="efficientnet_lite0"))
    >>> table = read_results("runs/photos")          # one row per image
"""

from eigencam.batch.engines import ENGINES
from eigencam.batch.inputs import InputPlan, Shard, plan_inputs, read_shard
from eigencam.batch.run import BatchReport, run_batch
from eigencam.batch.shards import SAVE_KINDS, ParquetCodec, decode_maps, read_results
from eigencam.batch.worker import DEFAULT_THRESHOLD, BatchSpec, ShardWorker

__all__ = [
    "DEFAULT_THRESHOLD",
    "ENGINES",
    "SAVE_KINDS",
    "BatchReport",
    "BatchSpec",
    "InputPlan",
    "ParquetCodec",
    "Shard",
    "ShardWorker",
    "decode_maps",
    "plan_inputs",
    "read_results",
    "read_shard",
    "run_batch",
]
