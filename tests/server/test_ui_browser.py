"""The chat page in a real browser: headless Chromium (Selenium) against a real server and the simulated LLM.

Needs Debian's `chromium` and `chromium-driver` packages (or any Chrome/Chromium with a matching chromedriver on
PATH); without them the tests skip with a message saying so.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait
from starlette.responses import PlainTextResponse

from mini import AgenticRAG
from mini.server import ServerSettings, create_app
from mini.testing.server_thread import ServerThread
from tests.browser import chromium
from tests.conftest import SAMPLE_CORPUS
from tests.query.conftest import make_rag

QUESTION = "When is glass collected for recycling?"
TIMEOUT = 20.0


@pytest.fixture
def rag(sim: Any, tmp_path: Path) -> AgenticRAG:
    rag = make_rag(sim, tmp_path / "store", max_retries=0)
    assert rag.index_documents([SAMPLE_CORPUS]).ok
    sim.reset()
    return rag


@pytest.fixture(params=["chat", "query-only"])
def server(request: pytest.FixtureRequest, rag: AgenticRAG) -> Iterator[ServerThread]:
    """The full app, or ("query-only") one without POST /v1/chat/stream: the page falls back to /v1/query/stream."""
    app: Any = create_app(rag, settings=ServerSettings())
    if request.param == "query-only":
        app = _without(app, "/v1/chat/stream")
    with ServerThread(app) as running:
        if request.param == "query-only":  # the variant must really lack the route, or it tests nothing
            assert httpx.post(f"{running.url}/v1/chat/stream", json={"message": "hi"}).status_code == 404
        yield running


def _without(app: Any, path: str) -> Any:
    """`app` as a deployment without `path` (404), whatever the router's internals."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == path:
            await PlainTextResponse("Not Found", status_code=404)(scope, receive, send)
            return
        await app(scope, receive, send)

    return wrapped


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    with chromium(tmp_path / "chrome-profile", page_load_timeout=TIMEOUT) as driver:
        yield driver


def by_testid(testid: str) -> tuple[str, str]:
    return By.CSS_SELECTOR, f'[data-testid="{testid}"]'


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], Any], message: str) -> Any:
    def safe(d: WebDriver) -> Any:
        try:
            return condition(d)
        except (NoSuchElementException, StaleElementReferenceException):
            return False

    return WebDriverWait(driver, TIMEOUT, poll_frequency=0.05).until(safe, message)


def answer_state(driver: WebDriver) -> str:
    return driver.find_element(*by_testid("answer")).get_attribute("data-state") or ""


def ask(driver: WebDriver, question: str) -> None:
    box = driver.find_element(*by_testid("question"))
    box.send_keys(question)
    driver.find_element(*by_testid("send")).click()


def has_route(server: ServerThread, method: str, path: str) -> bool:
    """Asked of the running server, not of its schema or router (a deployment may lack a route either lists):
    an empty body gets a validation error from a route that exists, 404 from one that does not."""
    return httpx.request(method, f"{server.url}{path}", json={}, timeout=10).status_code != 404


def test_question_streams_an_answer_whose_citation_opens_the_cited_source(
    server: ServerThread, browser: WebDriver
) -> None:
    browser.get(f"{server.url}/")
    assert browser.title == "Mini RAG"
    ask(browser, QUESTION)

    # Tokens appear in the answer before (or as) the stream finishes, and [1] becomes a button.
    wait_for(browser, lambda d: d.find_element(*by_testid("answer")).text.strip(), "no streamed text")
    cite: WebElement = wait_for(
        browser,
        lambda d: d.find_element(*by_testid("answer")).find_element(*by_testid("citation-1")),
        "no citation-1 button in the answer",
    )
    wait_for(browser, lambda d: answer_state(d) == "done", "the answer never finished")
    answer = browser.find_element(*by_testid("answer"))
    assert "Error" not in answer.text
    # The simulated model quotes the first sentence of source 1, then cites it: "<sentence> [1] ...".
    quoted = answer.text.split("[1]")[0].strip()
    assert quoted
    assert (
        browser.find_element(*by_testid("question")).get_attribute("value") == ""
    )  # cleared for the next one

    panel = browser.find_element(*by_testid("source-panel"))
    assert not panel.is_displayed()
    cite.click()
    wait_for(browser, lambda d: d.find_element(*by_testid("source-panel")).is_displayed(), "panel hidden")
    shown = panel.find_element(*by_testid("source-text")).text
    assert shown.strip()
    words = re.findall(r"[A-Za-z]{4,}", quoted)
    assert words and all(word in shown for word in words), (quoted, shown)
    first_listed = browser.find_element(By.CSS_SELECTOR, '[data-testid="answer"] ~ details .source-name')
    assert panel.find_element(*by_testid("source-name")).text == first_listed.get_attribute("title")

    # With the chat route, the turn was kept in this tab's session; without it, the fallback answered.
    session_id = browser.execute_script("return sessionStorage.getItem('mini.sessionId')")
    assert session_id and re.fullmatch(r"[A-Za-z0-9_-]+", session_id)
    if has_route(server, "post", "/v1/chat/stream"):
        history = httpx.get(f"{server.url}/v1/sessions/{session_id}", timeout=10)
        assert history.status_code == 200 and QUESTION in history.text, history.text

    # The retrieved sources are listed under the answer, collapsed.
    details = browser.find_element(By.CSS_SELECTOR, "article.msg.assistant details.sources")
    assert details.get_attribute("open") is None
    assert re.fullmatch(r"Sources \(\d+\)", details.find_element(By.TAG_NAME, "summary").text)

    # Escape closes the panel again.
    panel.send_keys(Keys.ESCAPE)
    wait_for(browser, lambda d: not d.find_element(*by_testid("source-panel")).is_displayed(), "panel open")


@pytest.mark.parametrize("server", ["chat"], indirect=True)
def test_upload_polls_the_job_until_done(server: ServerThread, browser: WebDriver, tmp_path: Path) -> None:
    # The upload route is part of the app: its absence is a failure, never a skip.
    assert has_route(server, "post", "/v1/documents"), "POST /v1/documents is missing from the app"
    doc = tmp_path / "ferry_timetable.md"
    doc.write_text(
        "# Ferry timetable\n\nThe Harbor Town ferry to Gull Island leaves the quay at 9 a.m. and 4 p.m. "
        "every day from May to September.\n",
        encoding="utf-8",
    )
    browser.get(f"{server.url}/")
    browser.find_element(*by_testid("upload")).send_keys(str(doc))

    def finished(d: WebDriver) -> str:
        text = d.find_element(*by_testid("job-status")).text
        return text if ("done" in text or "failed" in text) else ""

    status = wait_for(browser, finished, "the upload job never finished")
    assert "done" in status and "1 added" in status, status

    # The upload went to this tab's chat session: the next answer finds it among its sources.
    if not has_route(server, "post", "/v1/chat/stream"):
        return  # answers come from /v1/query/stream, which never searches session uploads
    ask(browser, "When does the ferry to Gull Island leave?")
    wait_for(browser, lambda d: answer_state(d) == "done", "the answer never finished")
    listed = browser.find_elements(By.CSS_SELECTOR, '[data-testid="answer"] ~ details .source-item')
    names = [b.find_element(By.CLASS_NAME, "source-name").get_attribute("title") or "" for b in listed]
    ferry = [b for b, name in zip(listed, names, strict=True) if name.endswith("/ferry_timetable.md")]
    assert ferry, names
    browser.find_element(By.CSS_SELECTOR, '[data-testid="answer"] ~ details summary').click()
    ferry[0].click()
    wait_for(
        browser,
        lambda d: "Gull Island" in d.find_element(*by_testid("source-text")).text,
        "the uploaded document is not shown as a source",
    )


def test_api_key_prompt_stop_and_server_errors(rag: AgenticRAG, sim: Any, browser: WebDriver) -> None:
    with ServerThread(create_app(rag, settings=ServerSettings(api_keys="s3cret"))) as server:
        browser.get(f"{server.url}/")

        # 401: the page asks for a key, stores it for the tab, and retries.
        ask(browser, QUESTION)
        dialog = wait_for(
            browser,
            lambda d: (
                d.find_element(By.ID, "key-dialog").is_displayed() and d.find_element(By.ID, "key-dialog")
            ),
            "no key prompt",
        )
        dialog.find_element(*by_testid("api-key")).send_keys("s3cret")
        dialog.find_element(*by_testid("api-key-ok")).click()
        wait_for(browser, lambda d: answer_state(d) == "done", "no answer after entering the key")
        assert browser.execute_script("return sessionStorage.getItem('mini.apiKey')") == "s3cret"
        assert browser.find_elements(*by_testid("citation-1"))

        # Stop aborts a slow stream; the partial answer stays, marked as stopped. (A new chat: no history to
        # condense, so the slow simulated model is only slow where it matters.)
        browser.find_element(*by_testid("new-chat")).click()
        sim.configure(token_ms=80)
        ask(browser, QUESTION)
        wait_for(browser, lambda d: d.find_element(*by_testid("answer")).text.strip(), "no streamed text")
        browser.find_element(*by_testid("stop")).click()
        wait_for(browser, lambda d: answer_state(d) == "stopped", "stop did not stop the stream")
        assert "Stopped" in browser.find_element(*by_testid("answer")).text
        assert browser.find_element(*by_testid("send")).is_displayed()
        sim.configure(token_ms=0)

        # A failing provider: the server's message is shown in the bubble, never swallowed.
        sim.configure(error_fraction=1.0)
        ask(browser, QUESTION)
        wait_for(browser, lambda d: answer_state(d) == "error", "no error shown")
        assert "Error:" in browser.find_element(*by_testid("answer")).text
        assert len(browser.find_elements(By.CSS_SELECTOR, "article.msg.assistant")) == 2
