"""The markdown and CSV tables of every benchmark (``table.md``, ``per_image.csv``...): one way to
lay out a table, one way to format each kind of cell, one way to write a text file.

A missing value is ``-`` in markdown and an empty cell in CSV.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eigencam.io.outputs import atomic_write


# -- markdown ---------------------------------------------------------------------------------
def heading(title: str, note: str | None = None) -> list[str]:
    """A ``###`` heading and, when given, an italic note under it, each followed by a blank."""
    return [f"### {title}", ""] + ([f"_{note}_", ""] if note else [])


def markdown_table(
    header: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None
) -> list[str]:
    """The lines of a GitHub markdown table.

    Args:
        header: the column titles.
        rows: the cells of each row (formatted already; anything else goes through ``str``).
        align: ``l`` (names) or ``r`` (numbers) per column; default the first column left and
            the others right.
    """
    align = align or "l" + "r" * (len(header) - 1)
    rule = "|" + "".join("---|" if a == "l" else "---:|" for a in align)
    lines = ["| " + " | ".join(header) + " |", rule]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def num(value: float | None, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals, ``-`` for None."""
    return "-" if value is None else f"{value:.{digits}f}"


def pct(value: float | None, digits: int = 1) -> str:
    """A fraction in percent (``0.123`` -> ``12.3``), ``-`` for None."""
    return "-" if value is None else f"{100.0 * value:.{digits}f}"


def median_iqr(d: Mapping[str, Any] | None, digits: int = 2) -> str:
    """``median [q25, q75]`` of a :func:`~eigencam.evaluation.metrics.stats.describe` dict."""
    if not d or d.get("median") is None:
        return "-"
    return f"{d['median']:.{digits}f} [{d['q25']:.{digits}f}, {d['q75']:.{digits}f}]"


def share(r: Mapping[str, Any] | None) -> str:
    """``rate% (count/n)`` of a :func:`~eigencam.evaluation.metrics.stats.rate` dict."""
    if not r or r.get("rate") is None:
        return "-"
    return f"{100 * r['rate']:.0f}% ({r['count']}/{r['n']})"


# -- CSV --------------------------------------------------------------------------------------
def csv_cell(value: Any, digits: int = 5) -> str:
    """One CSV cell: None empty, booleans 0/1, floats to ``digits`` significant digits, a list
    of numbers (a box) space-separated with one decimal, strings as they are."""
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}g}"
    if isinstance(value, (list, tuple)):
        return " ".join(f"{x:.1f}" for x in value)
    return str(value)


def fixed(value: float, digits: int) -> str:
    """A float with ``digits`` decimals, empty when it is not finite (a missing box)."""
    return f"{value:.{digits}f}" if np.isfinite(value) else ""


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """Atomically write a CSV file; each cell goes through :func:`csv_cell`."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows([csv_cell(c) for c in row] for row in rows)
    return write_text(path, buf.getvalue())


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write a text file (``table.md``, ``report.html``...)."""
    return atomic_write(path, lambda fh: fh.write(text), mode="w")
