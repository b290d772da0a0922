"""``eigencam attack``: do explanations survive an adversarial example? (Section IV-B, Figure 4
of the Eigen-CAM paper; docs/robustness.md has the protocol and every measure.)

Each image is attacked with DeepFool (:mod:`eigencam.attacks.deepfool`); every method explains
the clean and the adversarial image (variants ``adversarial``, ``same_class``, ``noise``), and the
two maps are compared (:mod:`eigencam.evaluation.metrics.similarity`, box IoU, localization).
An image that cannot be read or attacked is a recorded failure; a method failing on an image (an
:class:`~eigencam.errors.EigenCAMError`) leaves that method's cells empty.
"""

from eigencam.evaluation.attack.report import figure_name, per_image_table, table_markdown
from eigencam.evaluation.attack.settings import AttackSettings, variants_of
from eigencam.evaluation.attack.summary import summarize
from eigencam.evaluation.attack.task import AttackTask, run_attack

__all__ = [
    "AttackSettings",
    "AttackTask",
    "figure_name",
    "per_image_table",
    "run_attack",
    "summarize",
    "table_markdown",
    "variants_of",
]
