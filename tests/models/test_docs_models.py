"""docs/models.md stays true: its matrix lists every tested model with the tested default layer,
and its Python examples run."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
from test_model_matrix import ROWS

DOC = Path(__file__).resolve().parents[2] / "docs" / "models.md"


def table_rows() -> dict[str, list[str]]:
    """`--model` cell -> the row's cells, for the compatibility matrix."""
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[1].startswith("`"):
            rows[cells[1].strip("`")] = cells
    return rows


def test_matrix_table_lists_every_tested_model_with_its_layer():
    rows = table_rows()
    for row in ROWS:
        assert row.id in rows, f"{row.id} is tested but missing from docs/models.md"
        assert rows[row.id][2] == f"`{row.layer}`", row.id


def examples() -> dict[str, str]:
    """Section title -> its Python blocks joined (a section's blocks share their names)."""
    text = DOC.read_text().split("## Worked examples", 1)[1].split("\n## ", 1)[0]
    sections = {}
    for part in text.split("\n### ")[1:]:
        title = part.splitlines()[0].strip()
        code = "\n".join(re.findall(r"```python\n(.*?)```", part, flags=re.S))
        if code:
            sections[title] = code
    return sections


def test_every_worked_example_section_has_python():
    assert {"Ultralytics YOLO", "Faster R-CNN (and RetinaNet, FCOS, SSD)", "ONNX"} <= set(
        examples()
    )
    assert any(t.startswith("Vision transformers") for t in examples())


@pytest.mark.slow
@pytest.mark.parametrize("title", list(examples()))
def test_python_examples_run(title, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(examples()[title], f"docs/models.md: {title}", "exec"), {})
