r"""``eigencam faithfulness``: do the maps point at what the classifier uses? Every metric of
:mod:`eigencam.evaluation.metrics.faithfulness`, for every method, on a dataset.

Each method explains each image's top-1 predicted class (class-agnostic methods: their one
map), and the maps are scored with:

- deletion AUC (lower is better) and insertion AUC (higher is better): the predicted class's
  probability as pixels are removed from / revealed on a baseline (blurred image or a constant)
  in order of decreasing relevance, ``steps`` equal steps;
- average drop % (lower is better) and increase in confidence % (higher is better): the image
  multiplied by its map;
- ROAD (remove and debias, noisy linear imputation) at the given fractions, most relevant first
  (MoRF, lower is better) and least relevant first (LeRF, higher is better), and their
  combination :math:`(\mathrm{LeRF} - \mathrm{MoRF}) / 2` (higher is better; the convention of
  pytorch-grad-cam's ``ROADCombined``): a map must rank pixels well at both ends.

Two maps that know nothing of the model are always scored too
(:mod:`eigencam.evaluation.metrics.baselines`): a random map (seeded per image) and a centred
Gaussian. A method is only informative where it beats both.

Outputs: ``metrics.json`` (per method: mean, median, quartiles of every metric; the mean
deletion / insertion / ROAD curves), ``table.md``, ``per_image.csv``, ``curves.png``. An
unreadable image is a recorded failure; a method failing on an image (an
:class:`~eigencam.errors.EigenCAMError`) leaves that method's cells empty.

- :mod:`.settings`: :class:`FaithfulnessSettings`; :mod:`.task`: :class:`FaithfulnessTask`,
  :func:`run_faithfulness`; :mod:`.summary`: :func:`summarize`; :mod:`.report`: the output files.
"""

from eigencam.evaluation.faithfulness.report import curves_plot, per_image_table, table_markdown
from eigencam.evaluation.faithfulness.settings import (
    BASELINE_KEYS,
    CURVES,
    METRICS,
    FaithfulnessSettings,
    curve_fractions,
)
from eigencam.evaluation.faithfulness.summary import summarize
from eigencam.evaluation.faithfulness.task import FaithfulnessTask, run_faithfulness, score_maps

__all__ = [
    "BASELINE_KEYS",
    "CURVES",
    "METRICS",
    "FaithfulnessSettings",
    "FaithfulnessTask",
    "curve_fractions",
    "curves_plot",
    "per_image_table",
    "run_faithfulness",
    "score_maps",
    "summarize",
    "table_markdown",
]
