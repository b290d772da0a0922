"""Evaluation of explanation maps: localization, faithfulness, robustness.

- :mod:`~eigencam.evaluation.datasets`: one reader per dataset format (ILSVRC, PASCAL VOC,
  COCO, CUB, the dev set's ``annotations.json``) behind ``READERS``, and stratified subsets;
- :mod:`~eigencam.evaluation.metrics`: pure functions: the localization protocols
  (``protocols``: the paper's top-1 / top-5 / GT-known / class-independent error, Choe et al.'s
  MaxBoxAcc / MaxBoxAccV2), map similarity (``similarity``), faithfulness (``faithfulness``),
  reference maps (``baselines``), medians and paired comparisons (``stats``); maps -> boxes and
  IoU are in :mod:`eigencam.postprocess.boxes`;
- :mod:`~eigencam.evaluation.tables`: the markdown / CSV tables of every benchmark;
- the benchmarks, each a task of the run loop (:mod:`eigencam.runs`):
  :mod:`~eigencam.evaluation.localization` (``eigencam localize``, docs/localization.md),
  :mod:`~eigencam.evaluation.robustness` (``eigencam attack``) and
  :mod:`~eigencam.evaluation.faithfulness_run` (``eigencam faithfulness``, docs/robustness.md).
"""

from eigencam.evaluation.datasets import Dataset, Sample, open_dataset
from eigencam.evaluation.metrics.protocols import (
    CHOE_GRID,
    CHOE_IOUS,
    PAPER_THRESHOLDS,
    maxboxacc,
    maxboxacc_v2,
    paper_protocol,
    parse_grid,
)
from eigencam.postprocess.boxes import box_iou, connected_components, quantize

__all__ = [
    "CHOE_GRID",
    "CHOE_IOUS",
    "PAPER_THRESHOLDS",
    "Dataset",
    "Sample",
    "box_iou",
    "connected_components",
    "maxboxacc",
    "maxboxacc_v2",
    "open_dataset",
    "paper_protocol",
    "parse_grid",
    "quantize",
]
