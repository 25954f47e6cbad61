"""The simulated provider's core: settings, shared state and counters, faults, errors and the wire contract."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import math
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

if TYPE_CHECKING:
    from starlette.routing import Route

READY_PREFIX = "SIM_SERVER_READY "  # the line the server prints once it accepts connections
ENDPOINT_NAMES = ("chat", "embeddings", "messages", "converse")
OUTCOMES = {
    200: "responses_ok",
    400: "bad_requests",
    404: "bad_requests",
    401: "unauthorized",
    403: "unauthorized",
    429: "rate_limited",
    500: "errors",
}
COUNTERS = ("requests", *dict.fromkeys(OUTCOMES.values()), "in_flight", "peak_in_flight")
# `disconnects`: streams the simulator cut itself; `clients_gone`: responses whose client left before the end.
COUNTERS += (
    "inputs_embedded",
    "completion_tokens",
    "stream_requests",
    "retried",
    "disconnects",
    "clients_gone",
)
MAX_ARRIVALS = 200_000
MAX_RECORDED_REQUESTS = 1_000  # headers are bigger than arrivals: the first thousand since a reset
_FAULT_IDS = itertools.count(1)


@dataclasses.dataclass
class SimConfig:
    """Runtime settings; every field can be changed with `POST /config`."""

    chat_ms: float = 300.0
    token_ms: float = 0.0
    embed_ms: float = 50.0
    embed_input_ms: float = 0.0
    dim: int = 384
    max_in_flight: int = 0  # 0 = unlimited
    rate_limit_fraction: float = 0.0
    error_fraction: float = 0.0  # answered 500
    retry_after: float = 1.0  # seconds, sent as Retry-After and retry-after-ms on 429
    slow_fraction: float = 0.0  # this fraction of admitted requests waits slow_ms more before being served
    slow_ms: float = 0.0
    disconnect_fraction: float = 0.0  # this fraction of streams is cut after the first piece
    reject_text: str = ""  # an embeddings request with an input containing this is answered 400 (bad input)
    seed: int = 0
    api_key: str | None = None


@dataclasses.dataclass(frozen=True)
class Fault:
    """An injected failure, rendered by each wire format in its own error shape."""

    kind: str  # "auth" (401/403), "rate_limit" (429), "server" (500)
    message: str
    retry_after: float | None = None
    request_id: str = dataclasses.field(default_factory=lambda: f"req_sim_{next(_FAULT_IDS)}")


@dataclasses.dataclass(frozen=True)
class Wire:
    """One provider wire format: which paths it owns, how it checks credentials, how it renders faults."""

    name: str
    endpoint_of: Callable[[str], str | None]  # request path -> stats endpoint name, None if not ours
    authorized: Callable[[dict[bytes, bytes], str], bool]  # request headers, configured key
    render: Callable[[Fault], Response]
    routes: Callable[[SimState], list[Route]]


def missing_model(model: Any) -> bool:
    """Models named "missing-..." do not exist: every wire answers them with its not-found error."""
    return str(model or "").startswith("missing")


def retry_after_headers(seconds: float | None) -> dict[str, str]:
    if seconds is None:
        return {}
    return {"Retry-After": str(math.ceil(seconds)), "retry-after-ms": str(round(seconds * 1000))}


def openai_error_body(message: str, kind: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _openai_bad_request(message: str) -> Response:
    return JSONResponse(openai_error_body(message, "invalid_request_error", None), status_code=400)


class BadRequest(Exception):
    """Turned into a 400 by `render` (the raising wire's error shape; OpenAI's by default)."""

    def __init__(self, message: str, render: Callable[[str], Response] | None = None) -> None:
        super().__init__(message)
        self.render = render or _openai_bad_request


class SimulatedDisconnect(Exception):
    """Raised inside a streaming body: the server drops the connection mid-response (like a crashed upstream)."""


async def json_body(request: Request, render: Callable[[str], Response] | None = None) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise BadRequest(f"invalid JSON body: {exc}", render) from exc
    if not isinstance(body, dict):
        raise BadRequest("the JSON body must be an object", render)
    return body


def max_in_window(times: list[float], window: float) -> int:
    """The most arrival times falling within any `window` seconds (e.g. retries arriving together)."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] > window:
            start += 1
        best = max(best, end - start + 1)
    return best


class SimState:
    """Config, counters, scripted replies and the seeded RNG shared by every request of one server."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.stats: dict[str, dict[str, int]] = {name: dict.fromkeys(COUNTERS, 0) for name in ENDPOINT_NAMES}
        self.peak_in_flight = 0
        self.started = time.monotonic()
        # (seconds since start or reset, endpoint, status, retry count): what a provider's access log would show
        self.arrivals: list[tuple[float, str, int, int]] = []
        # (time.monotonic(), endpoint) when a client went away mid-response; monotonic is system-wide on
        # Linux, so a test in another process can compare it with its own clock.
        self.gone: list[tuple[float, str]] = []
        self.scripts: list[dict[str, Any]] = []
        # What each provider request carried (path, query, headers): tests assert auth, gateway headers, query.
        self.requests: list[dict[str, Any]] = []
        self.rng = random.Random(config.seed)
        self.ids = itertools.count(1)
        self._changed: asyncio.Event | None = None  # created by the first waiter, inside the server's loop

    @property
    def in_flight(self) -> int:
        return sum(s["in_flight"] for s in self.stats.values())

    def reset(self) -> None:
        # Requests still in flight keep their count, so in_flight never goes negative when they finish.
        for counters in self.stats.values():
            for name in COUNTERS:
                if name != "in_flight":
                    counters[name] = counters["in_flight"] if name == "peak_in_flight" else 0
        self.peak_in_flight = self.in_flight
        self.started = time.monotonic()
        self.arrivals.clear()
        self.gone.clear()
        self.scripts.clear()
        self.requests.clear()
        self.rng = random.Random(self.config.seed)
        self.ids = itertools.count(1)
        self.changed()

    def update(self, settings: dict[str, Any]) -> None:
        unknown = sorted(set(settings) - {f.name for f in dataclasses.fields(SimConfig)})
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(unknown)}")
        for name, value in settings.items():
            if name == "api_key":
                self.config.api_key = None if value in (None, "") else str(value)
            else:  # coerce through the field's default type so "0.5" and 1 both work
                setattr(self.config, name, type(getattr(SimConfig(), name))(value))
        if "seed" in settings:
            self.rng = random.Random(self.config.seed)

    def snapshot(self) -> dict[str, Any]:
        total = {name: sum(s[name] for s in self.stats.values()) for name in COUNTERS}
        total["peak_in_flight"] = self.peak_in_flight  # the true peak, not the sum of per-endpoint peaks
        return {
            **{k: dict(v) for k, v in self.stats.items()},
            "total": total,
            "peak_in_flight": self.peak_in_flight,
        }

    def changed(self) -> None:
        """Counters moved: wake every `wait_until`, which checks its condition again."""
        event, self._changed = self._changed, None
        if event is not None:
            event.set()

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Return once `condition()` holds, checking it again whenever counters move (callers bound the wait)."""
        while not condition():
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()

    def client_gone(self, endpoint: str) -> None:
        """The client of a request to `endpoint` went away before its response ended."""
        self.stats[endpoint]["clients_gone"] += 1
        self.gone.append((time.monotonic(), endpoint))
        self.changed()

    def fault_for(self, wire: Wire, headers: dict[bytes, bytes], endpoint: str) -> Fault | None:
        """The fault for a request arriving now, if any: auth first, then rate limits, then 500s."""
        config = self.config
        if config.api_key is not None and not wire.authorized(headers, config.api_key):
            return Fault("auth", "Incorrect API key provided.")
        if not endpoint:
            return None
        over_limit = 0 < config.max_in_flight <= self.in_flight
        # One draw per configured fraction, so enabling one fault does not shift the other's sequence.
        if over_limit or (config.rate_limit_fraction > 0 and self.rng.random() < config.rate_limit_fraction):
            return Fault("rate_limit", "Rate limit reached (simulated).", config.retry_after)
        if config.error_fraction > 0 and self.rng.random() < config.error_fraction:
            return Fault("server", "The server had an error (simulated).")
        return None

    def draw(self, fraction: float) -> bool:
        """One seeded draw: True with probability `fraction` (no draw at all when it is 0)."""
        return fraction > 0 and self.rng.random() < fraction

    def should_disconnect(self, endpoint: str) -> bool:
        """Decided when a stream starts: cut this one after its first piece? (counted in `disconnects`)"""
        if not self.draw(self.config.disconnect_fraction):
            return False
        self.stats[endpoint]["disconnects"] += 1
        return True
