"""Shared fixtures: a hermetic environment, the simulated provider server, a loop-lag probe."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mini.testing.looplag import LoopLagProbe
from mini.testing.services import RedisServer

REPO = Path(__file__).resolve().parents[1]
SAMPLE_CORPUS = REPO / "examples" / "corpus"

_ENV_TO_CLEAR = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "MINI_LLM",
    "MINI_URI",
    "MINI_COLLECTION",
    "MINI_STORE_TOKEN",
    "MINI_EMBEDDING_MODEL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "COHERE_API_KEY",
    "CO_API_KEY",
    "LANGFUSE_PUBLIC_KEY",
    "LANGFUSE_SECRET_KEY",
    "LANGFUSE_HOST",
    "LANGFUSE_BASE_URL",
    # The server's front door: a developer's own keys or host list would change what every server test sees.
    "MINI_API_KEYS",
    "MINI_ALLOWED_HOSTS",
    "MINI_CORS_ORIGINS",
    "MINI_PUBLIC_DOCS",
    "MINI_REDIS_URL",  # shared state and provider limits in Redis: only the tests that start one use it
    # 0.1.3's names for our settings, and the Hub's: a developer's own would change what the tests see.
    "MILVUS_URI",
    "MILVUS_TOKEN",
    "EMBEDDING_MODEL",
    "HF_HUB_OFFLINE",
    "HF_ENDPOINT",
    # Provider requests honour proxy variables: the simulator on loopback must not go through a developer's.
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


@pytest.fixture(autouse=True)
def _hermetic_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never see a developer's keys or settings, and never write into the working directory."""
    for name in _ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MINI_URI", str(tmp_path_factory.mktemp("default_store")))
    # The server's default jobs database (for stores that are not a local directory) lives in the user's data
    # directory: a test must never write into the real one.
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg_data")))


@pytest.fixture(autouse=True)
def _fresh_limiters() -> Iterator[None]:
    """Provider limits are process-wide (shared per endpoint); each test starts without learnt caps."""
    from mini._limits import reset_limiters

    reset_limiters()
    yield
    reset_limiters()


_OWN_CACHE: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    # One graph cache per test session (the ONNX graph is built once per run, not per test), outside the
    # user's cache, set before any fixture so session/module fixtures see it too.
    global _OWN_CACHE
    if "MINI_CACHE_DIR" not in os.environ:
        _OWN_CACHE = os.environ["MINI_CACHE_DIR"] = tempfile.mkdtemp(prefix="mini-test-cache-")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _OWN_CACHE is not None:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)
        os.environ.pop("MINI_CACHE_DIR", None)


@pytest.fixture(scope="session")
def sim_server() -> Iterator[object]:
    """A real OpenAI-compatible HTTP server in a subprocess; tests reset/configure it as they need."""
    from mini.testing.sim import SimServer

    with SimServer(chat_ms=0, embed_ms=0) as server:
        yield server


def reset_sim(sim_server: object) -> None:
    """Back to the defaults every test starts from (a module-scoped fixture that talks to the simulator calls
    this too: the test before it may have left a key, latency or faults configured)."""
    sim_server.configure(  # type: ignore[attr-defined]
        chat_ms=0,
        token_ms=0,
        embed_ms=0,
        embed_input_ms=0,
        max_in_flight=0,
        rate_limit_fraction=0,
        error_fraction=0,
        slow_fraction=0,
        slow_ms=0,
        disconnect_fraction=0,
        reject_text="",
        retry_after=1,
        api_key="",
        seed=0,
    )


@pytest.fixture
def sim(sim_server: object) -> Iterator[object]:
    """The session's simulated server with stats and settings reset for this test."""
    reset_sim(sim_server)
    # Requests an earlier test left in flight (a cancelled job, a dropped stream) finish now, at zero latency,
    # instead of counting in this test's in-flight numbers; one still running after 10 s is left to reset().
    with contextlib.suppress(TimeoutError):
        sim_server.wait_for(in_flight=0, timeout=10)  # type: ignore[attr-defined]
    sim_server.reset()  # type: ignore[attr-defined]
    yield sim_server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One throwaway redis-server per test session (per xdist worker) on a free loopback port, without
    persistence; its URL once it accepts connections. Skips the test when Debian's redis-server is not installed."""
    if shutil.which("redis-server") is None:
        pytest.skip("needs Debian's redis-server")
    with RedisServer(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The session's redis-server, emptied for this test (FLUSHALL: no key of an earlier test is seen)."""
    import redis

    with redis.Redis.from_url(redis_server, socket_timeout=5) as client:
        client.flushall()
    return redis_server


@pytest.fixture
def lag_probe() -> LoopLagProbe:
    """A 1 ms ticker on the running loop that discounts machine-wide stalls (see mini.testing.looplag)."""
    return LoopLagProbe()


# -- a hung test tells what it waits for ---------------------------------------------------------------------------
# pytest-timeout (pyproject: 300 s) ends a hung test with every thread's stack, but an async test hangs inside
# its event loop, where threads only show `select()`. Shortly before the timeout, this prints each pending
# asyncio task's coroutine chain, one line per task, so a hang reported by CI says what it was waiting on.
_TASK_DUMP_BEFORE_TIMEOUT_S = 20.0
# Set by the controlling process before pytest-xdist starts its workers, which inherit it.
os.environ.setdefault(
    "MINI_TEST_HANG_DIR", str(Path(tempfile.gettempdir()) / f"mini-test-hangs-{os.getpid()}")
)
_HANG_DIR = Path(os.environ["MINI_TEST_HANG_DIR"])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if hasattr(terminalreporter.config, "workerinput"):  # a worker: only the controller's summary is shown
        return
    for dump in sorted(_HANG_DIR.glob("*.txt")) if _HANG_DIR.is_dir() else []:
        terminalreporter.write_line(dump.read_text().rstrip())
    shutil.rmtree(_HANG_DIR, ignore_errors=True)


def _dump_pending_tasks(test: str) -> None:
    import asyncio
    import gc
    import sys

    tasks = [o for o in gc.get_objects() if isinstance(o, asyncio.Task) and not o.done()]
    lines = [f"HUNG {test}: {len(tasks)} pending asyncio task(s)"]
    for task in tasks:
        # The whole await chain (task.get_stack shows only the outermost coroutine), down to what it waits on.
        chain: list[str] = []
        awaited: object = task.get_coro()
        while awaited is not None and len(chain) < 24:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is None:
                chain.append(f"<{type(awaited).__name__}>")
                break
            chain.append(f"{frame.f_code.co_name}({Path(frame.f_code.co_filename).name}:{frame.f_lineno})")
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
        lines.append(f"  {task.get_name()}: {' > '.join(chain) or '(not started)'}")
    text = "\n".join(lines)
    # pytest-xdist does not show a worker's stderr, and the worker is ended by the timeout: the controller
    # prints these files in its summary (pytest_terminal_summary below).
    _HANG_DIR.mkdir(parents=True, exist_ok=True)
    with (_HANG_DIR / f"{os.getpid()}.txt").open("a") as dump:
        dump.write(text + "\n")
    with contextlib.suppress(Exception):  # a worker's stderr may be closed
        print(text, file=sys.stderr, flush=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    import threading

    marker = item.get_closest_marker("timeout")
    limit = float(marker.args[0]) if marker and marker.args else float(item.config.getini("timeout") or 0)
    timer = None
    if limit > _TASK_DUMP_BEFORE_TIMEOUT_S:
        timer = threading.Timer(limit - _TASK_DUMP_BEFORE_TIMEOUT_S, _dump_pending_tasks, args=(item.nodeid,))
        timer.daemon = True
        timer.start()
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()
