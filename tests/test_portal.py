"""The sync bridge: works with or without a running loop, keeps context, cancels on interrupt, closes iterators."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from mini import _portal
from mini.errors import UsageError

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


async def _double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


def test_run_returns_result_from_plain_code() -> None:
    assert _portal.run(_double(21)) == 42
    assert _portal.run(_double(1)) == 2  # twice in a row: the same loop keeps serving


def test_run_works_inside_a_running_loop() -> None:
    # The Jupyter/FastAPI case: a sync call made while this thread's own loop is running.
    async def main() -> int:
        return _portal.run(_double(5))

    assert asyncio.run(main()) == 10
    assert asyncio.run(main()) == 10


def test_run_executes_on_the_portal_thread_not_the_caller() -> None:
    async def which_thread() -> str:
        return threading.current_thread().name

    assert _portal.run(which_thread()) == "mini-portal"


def test_context_variables_travel_into_the_portal() -> None:
    async def read() -> str:
        return request_id.get()

    token = request_id.set("abc")
    try:
        assert _portal.run(read()) == "abc"
    finally:
        request_id.reset(token)


def test_exceptions_propagate_unchanged() -> None:
    async def boom() -> None:
        raise KeyError("nope")

    with pytest.raises(KeyError, match="nope"):
        _portal.run(boom())


def test_sync_call_from_inside_the_portal_raises_usage_error() -> None:
    async def nested() -> int:
        return _portal.run(_double(1))

    with pytest.raises(UsageError, match="_async"):
        _portal.run(nested())


def test_keyboard_interrupt_cancels_the_coroutine(monkeypatch: pytest.MonkeyPatch) -> None:
    cancelled = threading.Event()
    started = threading.Event()

    async def slow() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    import concurrent.futures

    original = concurrent.futures.Future.result

    def interrupted_result(self: concurrent.futures.Future[object], timeout: float | None = None) -> object:
        if timeout is None:  # the first, unbounded wait: simulate Ctrl-C once the coroutine runs
            started.wait(5)
            raise KeyboardInterrupt
        return original(self, timeout)

    monkeypatch.setattr(concurrent.futures.Future, "result", interrupted_result)
    with pytest.raises(KeyboardInterrupt):
        _portal.run(slow())
    monkeypatch.undo()
    assert cancelled.wait(5), "the coroutine was not cancelled"


def test_iterate_yields_items_and_closes_on_early_exit() -> None:
    closed = threading.Event()

    async def numbers():  # type: ignore[no-untyped-def]
        try:
            for i in range(100):
                yield i
        finally:
            closed.set()

    first = []
    for item in _portal.iterate(numbers()):
        first.append(item)
        if item == 2:
            break
    assert first == [0, 1, 2]
    assert closed.is_set()
    assert list(_portal.iterate(numbers())) == list(range(100))


async def test_per_loop_gives_each_loop_its_own_instance() -> None:
    made: list[object] = []
    per_loop: _portal.PerLoop[object] = _portal.PerLoop(lambda: made.append(object()) or made[-1])
    here = per_loop.get()
    assert per_loop.get() is here

    async def from_portal() -> object:
        return per_loop.get()

    other = await asyncio.to_thread(_portal.run, from_portal())
    assert other is not here
    assert len(made) == 2


def test_per_loop_resources_are_closed_when_asyncio_run_ends() -> None:
    closed: list[str] = []

    async def close(name: str) -> None:
        await asyncio.sleep(0)  # a real await: the loop must still be running
        closed.append(name)

    counter = iter(range(100))
    per_loop: _portal.PerLoop[str] = _portal.PerLoop(lambda: f"client-{next(counter)}", aclose=close)

    async def use() -> str:
        return per_loop.get()

    assert asyncio.run(use()) == "client-0"
    assert closed == ["client-0"]
    assert asyncio.run(use()) == "client-1"  # a new loop gets a new instance
    assert closed == ["client-0", "client-1"]


def test_aclose_current_closes_once() -> None:
    closed: list[int] = []

    async def close(item: int) -> None:
        closed.append(item)

    per_loop: _portal.PerLoop[int] = _portal.PerLoop(lambda: 7, aclose=close)

    async def use() -> None:
        per_loop.get()
        await per_loop.aclose_current()
        await per_loop.aclose_current()

    asyncio.run(use())
    assert closed == [7]
