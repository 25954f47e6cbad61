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
)


@pytest.fixture(autouse=True)
def _hermetic_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never see a developer's keys or settings, and never write into the working directory."""
    for name in _ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MINI_URI", str(tmp_path_factory.mktemp("default_store")))


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


@pytest.fixture
def sim(sim_server: object) -> Iterator[object]:
    """The session's simulated server with stats and settings reset for this test."""
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
    # Requests an earlier test left in flight (a cancelled job, a dropped stream) finish now, at zero latency,
    # instead of counting in this test's in-flight numbers; one still running after 10 s is left to reset().
    with contextlib.suppress(TimeoutError):
        sim_server.wait_for(in_flight=0, timeout=10)  # type: ignore[attr-defined]
    sim_server.reset()  # type: ignore[attr-defined]
    yield sim_server


@pytest.fixture
def lag_probe() -> LoopLagProbe:
    """A 1 ms ticker on the running loop that discounts machine-wide stalls (see mini.testing.looplag)."""
    return LoopLagProbe()
