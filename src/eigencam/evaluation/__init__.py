"""Evaluation of explanation maps: localization, faithfulness, robustness.

Localization (maps as object localizers):

- :mod:`~eigencam.evaluation.boxes`: maps -> thresholded masks -> connected components -> boxes,
  IoU (batched, pure numpy / scipy);
- :mod:`~eigencam.evaluation.protocols`: the paper's protocol (top-1 / top-5 / GT-known /
  class-independent localization error) and Choe et al.'s MaxBoxAcc / MaxBoxAccV2, as pure
  functions over per-image IoUs;
- :mod:`~eigencam.evaluation.datasets`: ILSVRC, PASCAL VOC, COCO, CUB and the dev set's
  ``annotations.json``;
- :mod:`~eigencam.evaluation.runner`: batched, resumable runs that record boxes and IoUs;
- :mod:`~eigencam.evaluation.report`: ``metrics.json``, ``table.md``, ``per_image.csv``,
  ``report.html``.

See docs/localization.md for the protocols in full. Faithfulness metrics (deletion /
insertion, average drop / increase, ROAD) are in :mod:`~eigencam.evaluation.faithfulness`.

Robustness and faithfulness benchmarks (docs/robustness.md):

- :mod:`~eigencam.evaluation.similarity`: Pearson r, SSIM, top-region IoU of two maps;
- :mod:`~eigencam.evaluation.robustness`: ``eigencam attack`` (DeepFool, clean vs adversarial);
- :mod:`~eigencam.evaluation.faithfulness_run`: ``eigencam faithfulness``, with the random and
  centre-Gaussian baselines of :mod:`~eigencam.evaluation.baselines`;
- :mod:`~eigencam.evaluation.benchmark`, :mod:`~eigencam.evaluation.stats`,
  :mod:`~eigencam.evaluation.sampling`: what the two share on the run loop, medians / paired
  comparisons, stratified subsets.
"""

from eigencam.evaluation.boxes import box_iou, connected_components, quantize
from eigencam.evaluation.datasets import Dataset, Sample, open_dataset
from eigencam.evaluation.protocols import (
    CHOE_GRID,
    CHOE_IOUS,
    PAPER_THRESHOLDS,
    maxboxacc,
    maxboxacc_v2,
    paper_protocol,
    parse_grid,
)

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
