"""The former module of ``eigencam localize``'s outputs, now
:mod:`eigencam.evaluation.localization.report`; its names stay importable from here."""

from eigencam.evaluation.localization.report import (
    accuracy_plot,
    render_gallery,
    report_html,
    run_label,
    select_cases,
    table_markdown,
    write_ground_truth_csv,
    write_jpeg,
    write_per_image_csv,
    write_report,
)

__all__ = [
    "accuracy_plot",
    "render_gallery",
    "report_html",
    "run_label",
    "select_cases",
    "table_markdown",
    "write_ground_truth_csv",
    "write_jpeg",
    "write_per_image_csv",
    "write_report",
]
