"""``eigencam localize``: maps as object localizers (the paper's Table 1, Choe et al.'s MaxBoxAcc).

- :mod:`.settings`: what is measured (:class:`LocalizeSettings`) and the scoring of a batch;
- :mod:`.task`: the run (:func:`run_localization`, a :class:`LocalizeTask` on the run loop);
- :mod:`.summary`: the records (:func:`load_records`) and both protocols (:func:`summarize`);
- :mod:`.report`: :func:`localize`, the end-to-end benchmark and every output file.

Names load on first use, so the scorer processes import the torch-free :mod:`.settings` only.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "LocalizeSettings": "settings",
    "score_part": "settings",
    "settings_dict": "settings",
    "LocalizeTask": "task",
    "run_localization": "task",
    "Records": "summary",
    "calibration_from_metrics": "summary",
    "load_records": "summary",
    "summarize": "summary",
    "localize": "report",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
