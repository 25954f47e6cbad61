"""The bundled sample set's HTML report in a real browser: headless Chromium (Selenium) opens it from disk with no
console errors, and the summary, the charts and every question are there.

Needs Debian's `chromium` and `chromium-driver` packages (or any Chrome/Chromium with a matching chromedriver on
PATH); without them the test skips with a message saying so.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from typer.testing import CliRunner

from mini.cli.main import app
from tests.browser import chromium
from tests.eval.conftest import COLLECTION, SAMPLE_SET


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    with chromium(tmp_path / "chrome-profile", page_load_timeout=20, console_logs=True) as driver:
        yield driver


def test_the_sample_report_opens_without_errors(
    offline_store: Path, tmp_path: Path, browser: WebDriver
) -> None:
    out = tmp_path / "report"
    args = ["eval", "run", str(SAMPLE_SET), "--uri", str(offline_store), "--collection", COLLECTION]
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--llm", "none"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert all((out / name).is_file() for name in ("report.json", "report.html", "report.md"))

    browser.get((out / "report.html").resolve().as_uri())
    assert browser.title == "Mini RAG evaluation report"
    problems = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]
    assert not problems, problems

    summary = browser.find_element(By.CSS_SELECTOR, '[data-testid="summary"]')
    assert summary.is_displayed()
    metrics = [
        row.get_attribute("data-metric") for row in summary.find_elements(By.CSS_SELECTOR, "tr[data-metric]")
    ]
    assert metrics == ["hit@5", "mrr@5", "ndcg@5", "recall@5", "token_f1", "rouge_l", "semantic_similarity",
                       "citation_coverage"]  # fmt: skip
    chart = browser.find_element(By.CSS_SELECTOR, '[data-testid="chart"]')
    figures = chart.find_elements(By.CSS_SELECTOR, "figure svg")
    assert len(figures) == len(metrics) and all(svg.size["height"] > 0 for svg in figures)
    assert (
        chart.find_elements(By.CSS_SELECTOR, "rect") and browser.find_element(By.ID, "timings").is_displayed()
    )

    rows = browser.find_elements(By.CSS_SELECTOR, '[data-testid="row"]')
    assert len(rows) == 12
    rows[1].find_element(By.TAG_NAME, "summary").click()  # expand: answer and contexts are there
    assert "first Wednesday" in rows[1].find_element(By.CLASS_NAME, "answer").text
    assert rows[1].find_elements(By.CSS_SELECTOR, "ol.contexts > li")
