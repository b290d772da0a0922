r"""``eigencam attack``: do explanations survive an adversarial example? (Section IV-B, Figure 4
of the Eigen-CAM paper.)

For each image the classifier is attacked with DeepFool (:func:`eigencam.attacks.deepfool`,
multi-class, in the model's input space, kept inside the valid pixel range), and every method
explains the clean image and the adversarial one:

- class-specific methods explain the clean image's predicted class on the clean image and the
  adversarial class on the adversarial image (variant ``adversarial``, the one of the tables);
  the variant ``same_class`` explains the clean class on the adversarial image too, which
  separates "the map follows the new class" from "the features changed";
- class-agnostic methods (Eigen-CAM) have one map per image; their ``same_class`` variant is
  the ``adversarial`` one;
- optionally (``noise_control``) the clean map is also compared with the map of the image plus
  Gaussian noise of the same L2 norm as the adversarial perturbation.

Per image and method: Pearson correlation, SSIM and IoU of the top-15% regions of the two maps
(:mod:`eigencam.evaluation.metrics.similarity`, at the model's input resolution, where the
adversarial image lives), the IoU of the two localization boxes (the paper's protocol), and
whether each box localizes the object (IoU >= 0.5 with a ground-truth box). Aggregates go to
``metrics.json`` and ``table.md``, every number to ``per_image.csv``, one figure per image to
``figures/``. An image that cannot be read or attacked is a recorded failure; a method failing on
an image (an :class:`~eigencam.errors.EigenCAMError`) leaves that method's cells empty.

- :mod:`.settings`: :class:`AttackSettings`; :mod:`.task`: :class:`AttackTask`,
  :func:`run_attack`; :mod:`.summary`: :func:`summarize`; :mod:`.report`: the output files.
"""

from eigencam.evaluation.attack.report import (
    figure_name,
    per_image_table,
    render_figure,
    table_markdown,
)
from eigencam.evaluation.attack.settings import MEASURES, VARIANTS, AttackSettings, variants_of
from eigencam.evaluation.attack.summary import summarize
from eigencam.evaluation.attack.task import AttackTask, run_attack

__all__ = [
    "MEASURES",
    "VARIANTS",
    "AttackSettings",
    "AttackTask",
    "figure_name",
    "per_image_table",
    "render_figure",
    "run_attack",
    "summarize",
    "table_markdown",
    "variants_of",
]
