"""report.html opened in a real headless Chromium: every image loads, no console errors, the
tables are there. Skipped, with the reason, when Chromium or playwright is missing
(``.ci/run`` installs Debian's chromium)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import localize_fixtures as fx
from eigencam.evaluation.datasets import read_dev
from eigencam.evaluation.localization import LocalizeSettings, localize

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def chromium_or_skip() -> str:
    candidates = [os.environ.get("EIGENCAM_CHROMIUM"), "/usr/bin/chromium"]
    candidates += [shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    pytest.skip("no Chromium found (apt-get install chromium, or set EIGENCAM_CHROMIUM)")


@pytest.fixture
def report(tmp_path) -> Path:
    data = fx.make_dataset(tmp_path / "data")
    expl = fx.explainers()
    model = expl["green"].model
    out = tmp_path / "out"
    localize(
        read_dev(data),
        model,
        fx.PRE,
        expl,
        out,
        settings=LocalizeSettings(box_grid=(0.0, 0.5)),
        gallery=2,
        labels=["zero", "one", "two"],
    )
    return out / "report.html"


def test_report_opens_in_headless_chromium(report):
    executable = chromium_or_skip()
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on(
                "console",
                lambda m: (
                    problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning")
                    else None
                ),
            )
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.goto(report.as_uri(), wait_until="load")
            images = page.evaluate(
                "Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, "
                "i.naturalWidth])"
            )
            tables = page.evaluate(
                "Array.from(document.querySelectorAll('table')).map(t => t.innerText)"
            )
            title = page.title()
        finally:
            browser.close()
    assert problems == []
    # The plot plus, per method, 2 best and 2 worst cases.
    assert len(images) == 1 + 2 * 4
    broken = [src for src, complete, width in images if not complete or width == 0]
    assert broken == []
    assert "accuracy.png" in images[0][0]
    assert title.startswith("eigencam localize")
    text = "\n".join(tables)
    for header in ("top-1 loc err", "GT-known", "MaxBoxAccV2", "wrong: GT-known"):
        assert header in text
    assert "green" in text and "plane" in text
