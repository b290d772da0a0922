"""Explain datasets larger than one machine: ``eigencam batch``, locally or on Ray.

The input is cut into deterministic shards (:mod:`eigencam.batch.inputs`); a run is the one
run loop (:func:`eigencam.runs.run_task`) over the shards, one shard per batch: each becomes
one Parquet part of the run folder (:mod:`eigencam.batch.shards`, the folder's codec), written
atomically by a worker holding the model (:mod:`eigencam.batch.worker`), in this process or on
a Ray actor pool (:mod:`eigencam.batch.engines`); :func:`run_batch` resumes a killed run where
it stopped (:mod:`eigencam.batch.run`). Ray and pyarrow are imported only when used.

Example:
    >>> from eigencam.batch import BatchSpec, run_batch, read_results
    >>> report = run_batch(["photos/"], "runs/photos", BatchSpec(model="efficientnet_lite0"))
    >>> table = read_results("runs/photos")          # one row per image
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "BatchSpec": "eigencam.batch.worker",
    "ShardWorker": "eigencam.batch.worker",
    "DEFAULT_THRESHOLD": "eigencam.batch.worker",
    "run_batch": "eigencam.batch.run",
    "BatchReport": "eigencam.batch.run",
    "plan_inputs": "eigencam.batch.inputs",
    "read_shard": "eigencam.batch.inputs",
    "InputPlan": "eigencam.batch.inputs",
    "Shard": "eigencam.batch.inputs",
    "ParquetCodec": "eigencam.batch.shards",
    "read_results": "eigencam.batch.shards",
    "decode_maps": "eigencam.batch.shards",
    "SAVE_KINDS": "eigencam.batch.shards",
    "ENGINES": "eigencam.batch.engines",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'eigencam.batch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
