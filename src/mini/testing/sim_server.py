"""Simulated LLM provider server (latency, faults, stats) for provider tests and benchmarks.

One process speaks three wire formats, each on its own paths: OpenAI (`/v1/chat/completions`,
`/v1/embeddings`), Anthropic Messages (`/v1/messages`, see `sim_anthropic`) and AWS Bedrock Converse
(`/model/{id}/converse[-stream]`, see `sim_bedrock`). They share the settings, the fault injection (auth,
429 fraction, a max-in-flight cap answered with 429 + Retry-After, 5xx fraction, slow responses, mid-stream
disconnects), the deterministic answers (also to `mini.eval`'s judge prompts), the scripted replies and the
statistics (`GET /stats`, and `GET /arrivals`: every request's arrival time, endpoint, status and retry count).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import functools
import hashlib
import itertools
import json
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import IO, Any

import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

READY_PREFIX = "SIM_SERVER_READY "
ENDPOINT_NAMES = ("chat", "embeddings", "messages", "converse")
_OUTCOMES = {
    200: "responses_ok",
    400: "bad_requests",
    404: "bad_requests",
    401: "unauthorized",
    403: "unauthorized",
    429: "rate_limited",
    500: "errors",
}
_COUNTERS = ("requests", *dict.fromkeys(_OUTCOMES.values()), "in_flight", "peak_in_flight")
_COUNTERS += ("inputs_embedded", "completion_tokens", "stream_requests", "retried", "disconnects")
RETRY_HEADER = (
    b"x-mini-retry-count"  # sent by mini's transports on retries; the OpenAI SDK's equivalent below
)
_SDK_RETRY_HEADER = b"x-stainless-retry-count"
_MAX_ARRIVALS = 200_000
_FAULT_IDS = itertools.count(1)
_WORD = re.compile(r"\w+")
_SOURCE_BLOCK = re.compile(r"^\[(\d+)\]\s*(?:\(source: [^\n]*?\)\s)?(.*)$", re.DOTALL)
_REWRITE_COUNT = re.compile(r"Return exactly (\d+) search queries")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


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


@functools.lru_cache(maxsize=65536)
def _token_slot(token: str, dim: int) -> tuple[int, float]:
    # blake2b, not hash(): Python's str hash is salted per process, vectors must match across runs.
    value = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
    return value % dim, -1.0 if value >> 63 else 1.0


def embed_text(text: str, dim: int) -> np.ndarray:
    """Hashed bag-of-words vector, L2-normalised; texts sharing words get a high cosine similarity."""
    vector = np.zeros(dim, dtype=np.float32)
    for token in _WORD.findall(text.lower()):
        index, sign = _token_slot(token, dim)
        vector[index] += sign
    norm = float(np.linalg.norm(vector))
    if norm == 0.0:  # empty text (or tokens that cancel out): a valid unit vector instead of NaNs
        vector[0] = 1.0
        return vector
    return vector / norm


def _text_of(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


def _first_sentence(text: str) -> str:
    return _SENTENCE_END.split(text.strip(), maxsplit=1)[0]


_NONCOMMITTAL = re.compile(r"\b(?:do not know|don't know|not sure|could not find|cannot answer)\b", re.I)


def _claim_words(text: str) -> set[str]:
    words = {w for w in _WORD.findall(text.lower()) if len(w) >= 4}
    return words or set(_WORD.findall(text.lower()))


def _supported(claim: str, text: str) -> bool:
    """Word overlap stands in for a judge's reading: at least half of the claim's longer words are in `text`."""
    words = _claim_words(claim)
    return bool(words) and len(words & set(_WORD.findall(text.lower()))) * 2 >= len(words)


def judge_reply(payload: dict[str, Any]) -> str | None:
    """The deterministic JSON reply to a judge prompt of `mini.eval.judge` (a user message that is a JSON object
    with a "task"), or None for any other object. Claims are checked by word overlap (`_supported`)."""
    task, context = payload.get("task"), str(payload.get("context", ""))
    if task == "statements":
        answer = str(payload.get("answer", "")).strip()
        return json.dumps({"statements": [s for s in _SENTENCE_END.split(answer) if s.strip()]})
    if task == "verdicts":
        verdicts = [
            {"statement": s, "reason": "word overlap (simulated)", "verdict": int(_supported(s, context))}
            for s in payload.get("statements") or []
        ]
        return json.dumps({"verdicts": verdicts})
    if task == "questions":
        answer = str(payload.get("answer", "")).strip()
        sentences = [s.rstrip(".!?") for s in _SENTENCE_END.split(answer) if s.strip()] or [answer]
        noncommittal = int(bool(_NONCOMMITTAL.search(answer)))
        n = payload.get("n")
        questions = [
            {
                "question": f"What does the text say about {sentences[i % len(sentences)]}?",
                "noncommittal": noncommittal,
            }
            for i in range(n if isinstance(n, int) and 0 < n <= 10 else 1)
        ]
        return json.dumps({"questions": questions})
    if task == "usefulness":
        useful = _supported(str(payload.get("reference", "")), context)
        return json.dumps({"reason": "word overlap (simulated)", "verdict": int(useful)})
    if task == "attribution":
        classes = [
            {"sentence": s, "reason": "word overlap (simulated)", "attributed": int(_supported(s, context))}
            for s in payload.get("sentences") or []
        ]
        return json.dumps({"classifications": classes})
    return None


def _judge_payload(user: str) -> dict[str, Any] | None:
    if not user.lstrip().startswith("{"):
        return None
    try:
        payload = json.loads(user)
    except ValueError:
        return None
    return payload if isinstance(payload, dict) and "task" in payload else None


def relevance_score(prompt: str) -> int:
    """0-10 for a "Query: ...\n\nPassage:\n..." scoring prompt: the share of the query's longer words in the
    passage, so rerankers get a deterministic order that follows word overlap."""
    query, _, passage = prompt.partition("Passage:")
    words = _claim_words(query.replace("Query:", ""))
    found = words & set(_WORD.findall(passage.lower()))
    return round(10 * len(found) / len(words)) if words else 0


def answer_for(messages: list[dict[str, Any]]) -> str:
    """The deterministic reply to a conversation: judge a claim, score a passage, cite sources, rewrite queries,
    or echo."""
    user = next((_text_of(m) for m in reversed(messages) if m.get("role") == "user"), "")
    payload = _judge_payload(user)
    judged = judge_reply(payload) if payload is not None else None
    if judged is not None:
        return judged
    system = "\n".join(_text_of(m) for m in messages if m.get("role") in ("system", "developer"))
    lines = user.split("\n")
    if "Sources:" in lines:
        sources: dict[int, str] = {}
        for block in "\n".join(lines[lines.index("Sources:") + 1 :]).split("\n\n"):
            match = _SOURCE_BLOCK.match(block.strip())
            if match:
                sources.setdefault(int(match.group(1)), match.group(2))
        if 1 in sources:
            parts = [f"{_first_sentence(sources[n])} [{n}]" for n in (1, 2) if n in sources]
            return " ".join(parts)
    if "how relevant a passage is" in system:  # mini.rerankers.llm's scoring prompt
        return str(relevance_score(user))
    count = _REWRITE_COUNT.search(system)
    if count and "alternative search queries" in system:
        question = user.strip()
        return "\n".join(f"{question} (variant {i})" for i in range(1, int(count.group(1)) + 1))
    return f"Simulated answer: {user[:200]}"


def _pieces(content: str) -> list[str]:
    # Each piece keeps its leading whitespace so the streamed deltas concatenate to the exact content.
    return re.findall(r"\s*\S+|\s+$", content)


@dataclasses.dataclass(frozen=True)
class Reply:
    """What the simulated model says, in no particular wire format."""

    content: str
    tool_calls: list[dict[str, Any]]  # {"id", "name", "arguments": dict}
    prompt_tokens: int
    completion_tokens: int

    @property
    def pieces(self) -> list[str]:
        return _pieces(self.content)


def make_reply(state: SimState, messages: list[dict[str, Any]]) -> Reply:
    """The next scripted reply, else the deterministic answer; `messages` in OpenAI shape (text content)."""
    scripted = state.scripts.pop(0) if state.scripts else {"content": answer_for(messages)}
    calls = []
    for i, call in enumerate(scripted.get("tool_calls") or []):
        arguments = call.get("arguments", {})
        if isinstance(arguments, str):
            arguments = json.loads(arguments or "{}")
        calls.append({"id": f"call_sim_{next(state.ids)}_{i}", "name": call["name"], "arguments": arguments})
    content = scripted.get("content") or ""
    # Whitespace tokens: crude, but deterministic and good enough for usage and token_ms latency.
    completion = len(content.split()) + sum(len(json.dumps(c["arguments"]).split()) for c in calls)
    prompt = sum(len(_text_of(m).split()) for m in messages)
    return Reply(content, calls, prompt, completion)


def _tool_calls(reply: Reply) -> list[dict[str, Any]]:
    """The reply's tool calls in the OpenAI wire shape, arguments as a JSON string."""
    return [
        {
            "id": call["id"],
            "type": "function",
            "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])},
        }
        for call in reply.tool_calls
    ]


def _error_body(message: str, kind: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


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


def _openai_endpoint(path: str) -> str | None:
    # "" = ours but not counted (listing models): credentials are checked, no other fault applies.
    return {"/v1/chat/completions": "chat", "/v1/embeddings": "embeddings", "/v1/models": ""}.get(path)


def _openai_authorized(headers: dict[bytes, bytes], api_key: str) -> bool:
    return headers.get(b"authorization", b"").decode() == f"Bearer {api_key}"


def _openai_render(fault: Fault) -> Response:
    request_id = {"x-request-id": fault.request_id}
    if fault.kind == "auth":
        body = _error_body(fault.message, "invalid_request_error", "invalid_api_key")
        return JSONResponse(body, status_code=401, headers=request_id)
    if fault.kind == "rate_limit":
        body = _error_body(fault.message, "rate_limit_exceeded", "rate_limit_exceeded")
        headers = {**retry_after_headers(fault.retry_after), **request_id}
        return JSONResponse(body, status_code=429, headers=headers)
    return JSONResponse(_error_body(fault.message, "server_error", None), status_code=500, headers=request_id)


def missing_model(model: Any) -> bool:
    """Models named "missing-..." do not exist: every wire answers them with its not-found error."""
    return str(model or "").startswith("missing")


def retry_after_headers(seconds: float | None) -> dict[str, str]:
    if seconds is None:
        return {}
    return {"Retry-After": str(math.ceil(seconds)), "retry-after-ms": str(round(seconds * 1000))}


class SimState:
    """Config, counters, scripted replies and the seeded RNG shared by every request of one server."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.stats: dict[str, dict[str, int]] = {name: dict.fromkeys(_COUNTERS, 0) for name in ENDPOINT_NAMES}
        self.peak_in_flight = 0
        self.started = time.monotonic()
        # (seconds since start or reset, endpoint, status, retry count): what a provider's access log would show
        self.arrivals: list[tuple[float, str, int, int]] = []
        self.scripts: list[dict[str, Any]] = []
        self.rng = random.Random(config.seed)
        self.ids = itertools.count(1)

    @property
    def in_flight(self) -> int:
        return sum(s["in_flight"] for s in self.stats.values())

    def reset(self) -> None:
        # Requests still in flight keep their count, so in_flight never goes negative when they finish.
        for counters in self.stats.values():
            for name in _COUNTERS:
                if name != "in_flight":
                    counters[name] = counters["in_flight"] if name == "peak_in_flight" else 0
        self.peak_in_flight = self.in_flight
        self.started = time.monotonic()
        self.arrivals.clear()
        self.scripts.clear()
        self.rng = random.Random(self.config.seed)
        self.ids = itertools.count(1)

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
        total = {name: sum(s[name] for s in self.stats.values()) for name in _COUNTERS}
        total["peak_in_flight"] = self.peak_in_flight  # the true peak, not the sum of per-endpoint peaks
        return {
            **{k: dict(v) for k, v in self.stats.items()},
            "total": total,
            "peak_in_flight": self.peak_in_flight,
        }

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


def max_in_window(times: list[float], window: float) -> int:
    """The most arrival times falling within any `window` seconds (e.g. retries arriving together)."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] > window:
            start += 1
        best = max(best, end - start + 1)
    return best


class SimulatedDisconnect(Exception):
    """Raised inside a streaming body: the server drops the connection mid-response (like a crashed upstream)."""


class _Accounting:
    """ASGI wrapper: faults at arrival, in-flight from arrival to the last byte, outcomes by status code."""

    def __init__(self, app: ASGIApp, state: SimState, wires: list[Wire]) -> None:
        self.app = app
        self.state = state
        self.wires = wires

    def _route(self, path: str) -> tuple[Wire, str] | None:
        for wire in self.wires:
            endpoint = wire.endpoint_of(path)
            if endpoint is not None:
                return wire, endpoint
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        routed = self._route(scope.get("path", "")) if scope["type"] == "http" else None
        if routed is None:
            await self.app(scope, receive, send)
            return
        wire, endpoint = routed
        state = self.state
        status = 0

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        headers = dict(scope["headers"])
        fault = state.fault_for(wire, headers, endpoint)
        if not endpoint:  # uncounted path: only credentials matter
            await (wire.render(fault) if fault else self.app)(scope, receive, send)
            return
        retry = int(headers.get(RETRY_HEADER) or headers.get(_SDK_RETRY_HEADER) or 0)
        counters = state.stats[endpoint]
        counters["requests"] += 1
        counters["retried"] += retry > 0
        # Rejected requests never count as in flight: a burst of 429s must not inflate the load it reports.
        admitted = fault is None
        if admitted:
            counters["in_flight"] += 1
            counters["peak_in_flight"] = max(counters["peak_in_flight"], counters["in_flight"])
            state.peak_in_flight = max(state.peak_in_flight, state.in_flight)
        arrival = round(time.monotonic() - state.started, 4)
        try:
            if fault is not None:
                await wire.render(fault)(scope, receive, send_and_record)
                return
            if state.draw(state.config.slow_fraction):
                await asyncio.sleep(state.config.slow_ms / 1000)
            await self.app(scope, receive, send_and_record)
        finally:  # also on cancellation, when the client disconnects mid-stream
            if admitted:
                counters["in_flight"] -= 1
            if status in _OUTCOMES:
                counters[_OUTCOMES[status]] += 1
            if len(state.arrivals) < _MAX_ARRIVALS:
                state.arrivals.append((arrival, endpoint, status, retry))


def _openai_bad_request(message: str) -> Response:
    return JSONResponse(_error_body(message, "invalid_request_error", None), status_code=400)


class BadRequest(Exception):
    """Turned into a 400 by `render` (the raising wire's error shape; OpenAI's by default)."""

    def __init__(self, message: str, render: Callable[[str], Response] | None = None) -> None:
        super().__init__(message)
        self.render = render or _openai_bad_request


async def json_body(request: Request, render: Callable[[str], Response] | None = None) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise BadRequest(f"invalid JSON body: {exc}", render) from exc
    if not isinstance(body, dict):
        raise BadRequest("the JSON body must be an object", render)
    return body


async def _bad_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BadRequest)
    return exc.render(str(exc))


def build_app(state: SimState) -> ASGIApp:
    """The ASGI app: provider endpoints, and control endpoints (/stats, /arrivals, /config, /reset, /script)."""
    from mini.testing import sim_anthropic, sim_bedrock

    openai_wire = Wire("openai", _openai_endpoint, _openai_authorized, _openai_render, _openai_routes)
    wires = [openai_wire, sim_anthropic.WIRE, sim_bedrock.WIRE]

    async def stats(request: Request) -> Response:
        return JSONResponse(state.snapshot())

    async def arrivals(request: Request) -> Response:
        return JSONResponse({"arrivals": state.arrivals})

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse(state.snapshot())

    async def config(request: Request) -> Response:
        if request.method == "POST":
            try:
                state.update(await json_body(request))
            except (TypeError, ValueError) as exc:
                raise BadRequest(str(exc)) from exc
        return JSONResponse(dataclasses.asdict(state.config))

    async def script(request: Request) -> Response:
        responses = (await json_body(request)).get("responses")
        if not isinstance(responses, list) or not all(
            isinstance(r, dict)
            and ("content" in r or "tool_calls" in r)
            and all(isinstance(call, dict) and "name" in call for call in r.get("tool_calls") or [])
            for r in responses
        ):
            raise BadRequest('responses must be a list of {"content": ...} or {"tool_calls": [...]} objects')
        state.scripts.extend(responses)
        return JSONResponse({"queued": len(state.scripts)})

    routes = [route for wire in wires for route in wire.routes(state)]
    routes += [
        Route("/stats", stats, methods=["GET"]),
        Route("/arrivals", arrivals, methods=["GET"]),
        Route("/reset", reset, methods=["POST"]),
        Route("/config", config, methods=["GET", "POST"]),
        Route("/script", script, methods=["POST"]),
    ]
    # Each wire renders its own 400s; a BadRequest raised by a handler carries the wire that raised it.
    app = Starlette(routes=routes, exception_handlers={BadRequest: _bad_request})
    return _Accounting(app, state, wires)


def _openai_routes(state: SimState) -> list[Route]:
    """The OpenAI-compatible endpoints under /v1."""

    async def embeddings(request: Request) -> Response:
        body = await json_body(request)
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(inputs, list) or not all(isinstance(text, str) for text in inputs):
            raise BadRequest("input must be a string or a list of strings")
        config = state.config
        if config.reject_text and any(config.reject_text in text for text in inputs):
            raise BadRequest(f"input contains {config.reject_text!r}, which this model rejects")
        dim = int(body.get("dimensions") or config.dim)
        await asyncio.sleep((config.embed_ms + config.embed_input_ms * len(inputs)) / 1000)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(inputs):
            vector = embed_text(text, dim)
            encoded: Any = (
                base64.b64encode(vector.astype("<f4").tobytes()).decode() if as_base64 else vector.tolist()
            )
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(len(_WORD.findall(text)) for text in inputs)
        state.stats["embeddings"]["inputs_embedded"] += len(inputs)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return JSONResponse(
            {"object": "list", "data": data, "model": body.get("model", "sim-embed"), "usage": usage}
        )

    async def chat(request: Request) -> Response:
        body = await json_body(request)
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise BadRequest("messages must be a list of objects")
        if missing_model(body.get("model")):
            body = _error_body(f"The model `{body['model']}` does not exist.", "invalid_request_error", None)
            return JSONResponse(body, status_code=404, headers={"x-request-id": f"req_sim_{next(state.ids)}"})
        reply = make_reply(state, messages)
        content: str | None = reply.content if reply.content or not reply.tool_calls else None
        tool_calls = _tool_calls(reply)
        finish = "tool_calls" if tool_calls else "stop"
        prompt, completion = reply.prompt_tokens, reply.completion_tokens
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        base = {
            "id": f"chatcmpl-sim{next(state.ids)}",
            "created": int(time.time()),
            "model": body.get("model"),
        }
        config, counters = state.config, state.stats["chat"]
        if not body.get("stream"):
            await asyncio.sleep((config.chat_ms + config.token_ms * completion) / 1000)
            counters["completion_tokens"] += completion
            message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
            if tool_calls:
                message["tool_calls"] = tool_calls
            choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
            return JSONResponse({**base, "object": "chat.completion", "choices": [choice], "usage": usage})

        counters["stream_requests"] += 1
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        cut = state.should_disconnect("chat")

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
            payload: dict[str, Any] = {**base, "object": "chat.completion.chunk", "choices": [choice]}
            if include_usage:
                payload["usage"] = None
            return f"data: {json.dumps(payload)}\n\n"

        async def events() -> AsyncIterator[str]:
            # Latency lives in the generator: headers go out at once, the first token after chat_ms (like TTFT).
            await asyncio.sleep(config.chat_ms / 1000)
            pieces = _pieces(content or "")
            for i, piece in enumerate(pieces):
                if i:
                    await asyncio.sleep(config.token_ms / 1000)
                yield chunk({"role": "assistant", "content": piece} if i == 0 else {"content": piece})
                counters["completion_tokens"] += 1
                if cut:
                    raise SimulatedDisconnect("stream cut after the first piece (simulated)")
            if tool_calls:
                deltas = [{"index": i, **call} for i, call in enumerate(tool_calls)]
                yield chunk({"role": "assistant", "content": None, "tool_calls": deltas})
            yield chunk({}, finish)
            if include_usage:
                payload: dict[str, Any] = {
                    **base,
                    "object": "chat.completion.chunk",
                    "choices": [],
                    "usage": usage,
                }
                yield f"data: {json.dumps(payload)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    async def models(request: Request) -> Response:
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "sim"}
            for name in ("sim-chat", "sim-embed")
        ]
        return JSONResponse({"object": "list", "data": data})

    return [
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
    ]


class _ReadyServer(uvicorn.Server):
    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        # The bound port is only known now (port 0); one flushed line tells the parent we accept connections.
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        sys.stdout.write(f"{READY_PREFIX}http://{host}:{port}\n")
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mini.testing.sim_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    for field in dataclasses.fields(SimConfig):
        default = getattr(SimConfig(), field.name)
        kind = str if field.name == "api_key" else type(default)
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=kind, default=default)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--exit-on-stdin-eof", action="store_true", help="exit when the parent closes stdin")
    args = parser.parse_args(argv)
    config = SimConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(SimConfig)})
    server = _ReadyServer(
        uvicorn.Config(
            build_app(SimState(config)),
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            access_log=False,
            lifespan="off",
            backlog=4096,  # bursts of hundreds of new connections from one benchmark client
            timeout_keep_alive=75,  # longer than clients' pool expiry, so the client closes idle sockets first
            timeout_graceful_shutdown=1,
        )
    )
    if args.exit_on_stdin_eof:
        # The parent holds our stdin open; if it dies without stop(), EOF ends us instead of leaving an orphan.
        def watch() -> None:
            # os.read on the raw fd: a thread blocked inside sys.stdin's buffered reader aborts interpreter exit.
            while os.read(sys.stdin.fileno(), 4096):
                pass
            server.should_exit = True

        threading.Thread(target=watch, daemon=True).start()
    server.run()


class SimServer:
    """Runs the simulator in a subprocess (its own GIL and event loop) and talks to it with urllib."""

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 20.0, **settings: Any
    ):
        SimState(SimConfig()).update(settings)  # fail fast on unknown names, before any process starts
        self.settings = settings
        self.host, self.port, self.startup_timeout = host, port, startup_timeout
        self.url = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def start(self) -> SimServer:
        argv = [sys.executable, "-m", "mini.testing.sim_server", f"--host={self.host}", f"--port={self.port}"]
        for name, value in self.settings.items():
            if value is not None:
                argv += [f"--{name.replace('_', '-')}", str(value)]
        # stderr goes to a file, not a pipe: an unread pipe would block the server once 64 KiB of logs pile up.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process; closed in stop()
        self._process = subprocess.Popen(
            [*argv, "--exit-on-stdin-eof"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr
        )
        try:
            self.url = self._read_ready_line()
        except BaseException:
            self.stop()
            raise
        return self

    def _read_ready_line(self) -> str:
        assert self._process is not None and self._process.stdout is not None
        stdout = self._process.stdout

        # readline() has no timeout; a daemon thread does, and it ends at EOF once stop() ends the process.
        lines: list[bytes] = []
        reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(self.startup_timeout)
        if not lines:
            raise RuntimeError(f"sim server not ready after {self.startup_timeout} s:\n{self.logs()}")
        line = lines[0].decode()
        if not line.startswith(READY_PREFIX):
            code = self._process.wait(5) if not line else self._process.poll()
            raise RuntimeError(
                f"sim server failed to start (exit code {code}, output {line!r}):\n{self.logs()}"
            )
        return line.removeprefix(READY_PREFIX).strip()

    def logs(self) -> str:
        """What the server wrote to stderr so far (warnings, tracebacks)."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def stop(self, timeout: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is not None:
            with process:  # leaving the block closes the pipes and reaps the child, so no zombie is left
                process.terminate()
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise ValueError(f"sim server {method} {path} failed: {exc.code} {exc.read().decode()}") from exc

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/stats")

    def reset(self) -> dict[str, Any]:
        return self._call("POST", "/reset", {})

    def arrivals(self) -> list[tuple[float, str, int, int]]:
        """Every request since the last reset: (seconds since reset, endpoint, status, retry count)."""
        return [tuple(row) for row in self._call("GET", "/arrivals")["arrivals"]]

    def config(self) -> dict[str, Any]:
        return self._call("GET", "/config")

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change latency/fault settings of the running server; returns the effective config."""
        return self._call("POST", "/config", settings)

    def script(self, responses: list[dict[str, Any]]) -> dict[str, Any]:
        """Queue chat replies, served first-in first-out before the built-in rules."""
        return self._call("POST", "/script", {"responses": responses})


if __name__ == "__main__":
    # Run the canonical module, not this `__main__` copy: the wire modules import mini.testing.sim_server,
    # and its classes (BadRequest, Fault, ...) must be the ones the app was built with.
    from mini.testing.sim_server import main as _main

    _main()
