"""``eigencam localize``: maps as object localizers (the paper's Table 1, Choe et al.'s MaxBoxAcc).

- :mod:`.settings`: what is measured (:class:`LocalizeSettings`) and the scoring of a batch;
- :mod:`.task`: :func:`localize`, a :class:`LocalizeTask` on the run loop;
- :mod:`.summary`: the records (:func:`load_records`) and both protocols (:func:`summarize`);
- :mod:`.report`: every output file (:func:`write_report`).

Names load on first use, so the scorer processes import the torch-free :mod:`.settings` only.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "LocalizeSettings": "settings",
    "score_part": "settings",
    "LocalizeTask": "task",
    "localize": "task",
    "Records": "summary",
    "calibration_from_metrics": "summary",
    "load_records": "summary",
    "summarize": "summary",
    "table_markdown": "report",
    "write_report": "report",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
