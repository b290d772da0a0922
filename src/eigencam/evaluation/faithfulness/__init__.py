"""``eigencam faithfulness``: do the maps point at what the classifier uses? (docs/robustness.md)

Each method explains each image's top-1 predicted class, and its maps are scored with every
metric of :mod:`eigencam.evaluation.metrics.faithfulness` (deletion / insertion AUC, average
drop / increase in confidence, ROAD MoRF / LeRF and their combination), next to two maps that know
nothing of the model (:mod:`eigencam.evaluation.metrics.baselines`): a method is informative
only where it beats both. An unreadable image is a recorded failure; a method failing on an image
(an :class:`~eigencam.errors.EigenCAMError`) leaves that method's cells empty.
"""

from eigencam.evaluation.faithfulness.report import per_image_table, table_markdown
from eigencam.evaluation.faithfulness.settings import FaithfulnessSettings
from eigencam.evaluation.faithfulness.summary import summarize
from eigencam.evaluation.faithfulness.task import FaithfulnessTask, run_faithfulness

__all__ = [
    "FaithfulnessSettings",
    "FaithfulnessTask",
    "per_image_table",
    "run_faithfulness",
    "summarize",
    "table_markdown",
]
