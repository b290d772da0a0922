"""The README's Python blocks run as pasted: in order, in one namespace, in an empty folder."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_readme_has_python_blocks():
    assert len(python_blocks(README.read_text())) >= 5


@pytest.mark.slow
def test_every_readme_python_block_runs_as_pasted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    for i, block in enumerate(python_blocks(README.read_text())):
        try:
            exec(compile(block, f"README.md python block {i + 1}", "exec"), namespace)
        except Exception as err:  # name the block that failed
            raise AssertionError(f"README python block {i + 1} fails:\n{block}") from err
    overlay = tmp_path / "cat_eigencam.png"
    assert overlay.is_file() and overlay.stat().st_size > 10_000  # the picture was written
    assert np.asarray(namespace["rgb"]).dtype == np.uint8
