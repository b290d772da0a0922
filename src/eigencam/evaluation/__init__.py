"""Evaluation of explanation maps: datasets, pure metrics and three benchmarks of one shape.

- :mod:`~eigencam.evaluation.datasets`: one reader per dataset format behind ``READERS``;
- :mod:`~eigencam.evaluation.metrics`: pure functions (localization protocols, map similarity,
  faithfulness, reference maps, statistics);
- :mod:`~eigencam.evaluation.benchmark` and :mod:`~eigencam.evaluation.tables`: what the
  benchmarks share;
- the benchmarks, each a :class:`~eigencam.evaluation.benchmark.Benchmark` task of the run loop
  with ``settings`` / ``task`` / ``summary`` / ``report`` modules:
  :mod:`~eigencam.evaluation.localization` (``eigencam localize``, docs/localization.md),
  :mod:`~eigencam.evaluation.attack` (``eigencam attack``) and
  :mod:`~eigencam.evaluation.faithfulness` (``eigencam faithfulness``, docs/robustness.md).
"""

from eigencam.evaluation.datasets import Dataset, Sample, open_dataset

__all__ = ["Dataset", "Sample", "open_dataset"]
