"""``eigencam localize``: maps as object localizers (the paper's Table 1, Choe et al.'s MaxBoxAcc).

- :mod:`.settings`: what is measured (:class:`LocalizeSettings`) and the scoring of a batch;
- :mod:`.task`: :func:`localize`, a :class:`LocalizeTask` on the run loop;
- :mod:`.summary`: the records (:func:`load_records`) and both protocols (:func:`summarize`);
- :mod:`.report`: every output file (:func:`write_report`).
"""

from eigencam.evaluation.localization.report import table_markdown, write_report
from eigencam.evaluation.localization.settings import LocalizeSettings, score_part
from eigencam.evaluation.localization.summary import (
    Records,
    calibration_from_metrics,
    load_records,
    summarize,
)
from eigencam.evaluation.localization.task import LocalizeTask, localize

__all__ = [
    "LocalizeSettings",
    "LocalizeTask",
    "Records",
    "calibration_from_metrics",
    "load_records",
    "localize",
    "score_part",
    "summarize",
    "table_markdown",
    "write_report",
]
