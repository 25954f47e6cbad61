"""The provider HTTP client: Retry-After, error bodies (pure), and typed transport errors (real
sockets: a refused port, a server slower than the timeout, the simulator's status codes)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from mini._http import HttpClient, error_message, parse_retry_after
from mini.errors import (
    AuthenticationError,
    BadRequestError,
    ProviderConnectionError,
    ProviderServerError,
    ProviderTimeoutError,
    RateLimitError,
)


def test_retry_after_prefers_milliseconds_and_understands_dates() -> None:
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "3"}) == 0.25
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480.0) == 10.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_error_message_reads_common_error_shapes() -> None:
    assert error_message(b'{"error": {"message": "bad key", "type": "x"}}') == "bad key"
    assert error_message(b'{"message": "overloaded"}') == "overloaded"
    assert error_message(b'{"error": "nope"}') == "nope"
    assert error_message(b"<html>502 Bad Gateway</html>") == "<html>502 Bad Gateway</html>"
    assert error_message(b"") == "(empty response body)"


async def test_refused_connection_is_a_provider_connection_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before use: nothing listens there
    client = HttpClient(f"http://127.0.0.1:{port}/v1", provider="test", timeout=5)
    with pytest.raises(ProviderConnectionError) as info:
        await client.post_json("/chat/completions", {})
    assert info.value.provider == "test"
    await client.aclose()


async def test_slow_server_is_a_timeout(sim: Any) -> None:
    sim.configure(chat_ms=2000)
    client = HttpClient(sim.base_url, provider="test", timeout=0.2)
    with pytest.raises(ProviderTimeoutError):
        await client.post_json(
            "/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        )
    await client.aclose()


@pytest.mark.parametrize(
    ("settings", "error", "status"),
    [
        ({"api_key": "secret"}, AuthenticationError, 401),
        ({"max_in_flight": 0, "rate_limit_fraction": 1.0, "retry_after": 0.25}, RateLimitError, 429),
        ({"error_fraction": 1.0}, ProviderServerError, 500),
    ],
)
async def test_error_statuses_become_typed_errors(
    sim: Any, settings: dict[str, Any], error: type, status: int
) -> None:
    sim.configure(**settings)
    client = HttpClient(sim.base_url, provider="test", timeout=5)
    try:
        with pytest.raises(error) as info:
            await client.post_json(
                "/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "x"}]}
            )
    finally:
        sim.configure(api_key=None)
        await client.aclose()
    assert info.value.status_code == status
    assert str(info.value)  # a message a human can read, from the error body
    if status == 429:
        assert info.value.retry_after == pytest.approx(0.25)


async def test_malformed_request_is_a_bad_request(sim: Any) -> None:
    client = HttpClient(sim.base_url, provider="test", timeout=5)
    with pytest.raises(BadRequestError):
        await client.post_json("/chat/completions", {"messages": "not a list"})
    await client.aclose()
