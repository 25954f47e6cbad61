"""The Anthropic Messages wire format (`POST /v1/messages`) of the simulated provider.

Answers come from the shared `make_reply` (same text, pieces and token counts as the OpenAI wire), wrapped in
Anthropic's shapes: content blocks, `tool_use`/`tool_result`, the streamed event sequence, typed error bodies
and the `request-id` header. Like the real API it requires `max_tokens` and the `anthropic-version` header,
rejects tool results that do not answer the previous turn's `tool_use` blocks, and stops at `max_tokens`
(`stop_reason: "max_tokens"`), so adapter mistakes show up as 400s here rather than in production. A scripted
`{"refusal": "..."}` ends with `stop_reason: "refusal"`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from mini import _sse
from mini.testing.sim import core
from mini.testing.sim.answers import Reply, make_reply

ENDPOINT = "messages"
PATH = "/v1/messages"
_REQUEST_IDS = itertools.count(1)  # for errors rendered without the state at hand (400s)
_FAULT_TYPES = {
    "auth": (401, "authentication_error"),
    "rate_limit": (429, "rate_limit_error"),
    "server": (500, "api_error"),
}

# The API's words for tool results that do not answer exactly the previous turn's `tool_use` blocks.
_MISSING_RESULTS = (
    "{where}: `tool_use` ids were found without `tool_result` blocks immediately after: {ids}. "
    "Each `tool_use` block must have a corresponding `tool_result` block in the next message."
)
_UNEXPECTED_RESULTS = (
    "{where}.content: unexpected `tool_use_id` found in `tool_result` blocks: {ids}. "
    "Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
)


def _error(
    status: int, kind: str, message: str, request_id: str, headers: dict[str, str] | None = None
) -> Response:
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}
    return JSONResponse(body, status_code=status, headers={**(headers or {}), "request-id": request_id})


def endpoint_of(path: str) -> str | None:
    return ENDPOINT if path == PATH else None


def authorized(headers: dict[bytes, bytes], api_key: str) -> bool:
    """The documented `x-api-key` header; the official SDK (2.x) sends the key as a Bearer token instead."""
    if headers.get(b"x-api-key", b"").decode(errors="replace") == api_key:
        return True
    return headers.get(b"authorization", b"").decode(errors="replace") == f"Bearer {api_key}"


def render(fault: core.Fault) -> Response:
    status, kind = _FAULT_TYPES.get(fault.kind, (500, "api_error"))
    extra = core.retry_after_headers(fault.retry_after) if fault.kind == "rate_limit" else {}
    return _error(status, kind, fault.message, fault.request_id, extra)


def _bad_request(message: str) -> Response:
    return _error(400, "invalid_request_error", message, f"req_sim_a{next(_REQUEST_IDS)}")


def _invalid(message: str) -> core.BadRequest:
    return core.BadRequest(message, _bad_request)


def _text(content: Any) -> str:
    """The text of a string or of a list of content blocks (non-text blocks say nothing here)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(b.get("text", "")) for b in content if isinstance(b, dict) and b.get("type") == "text"
        )
    return ""


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not all(isinstance(b, dict) and "type" in b for b in content):
        raise _invalid(f"{where}.content: Input should be a valid string or a list of content blocks")
    return content


def openai_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's conversation in OpenAI's text shape, for `make_reply`, checked the way the API checks it.

    The system prompt stays a system message (rewrite prompts are recognised by it), tool results become
    `tool` messages, and each user turn's text a user message (the last one drives the answer).
    """
    system = body.get("system")
    if system is not None and not isinstance(system, (str, list)):
        raise _invalid("system: Input should be a valid string or a list of text blocks")
    out: list[dict[str, Any]] = []
    if _text(system):
        out.append({"role": "system", "content": _text(system)})
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise _invalid("messages: Field required (a non-empty list of message objects)")
    pending: list[str] = []  # tool_use ids of the previous assistant turn, to be answered now
    for i, message in enumerate(messages):
        role, where = message.get("role"), f"messages.{i}"
        if role not in ("user", "assistant", "system"):
            raise _invalid(f"{where}.role: Input should be 'user', 'assistant' or 'system' (got {role!r})")
        blocks = _blocks(message.get("content"), where)
        # Newer API versions (and the 2.x SDK's types) allow system turns in `messages`, with text only.
        if role == "system" and any(b["type"] != "text" for b in blocks):
            raise _invalid(f"{where}.content: a system message holds text blocks only")
        answered = [b.get("tool_use_id") for b in blocks if b["type"] == "tool_result"]
        if blocks[: len(answered)] != [b for b in blocks if b["type"] == "tool_result"]:
            raise _invalid(f"{where}.content: `tool_result` blocks must come first, before any other content")
        missing = [tool_id for tool_id in pending if tool_id not in answered]
        unexpected = [tool_id for tool_id in answered if tool_id not in pending]
        for ids, template in ((missing, _MISSING_RESULTS), (unexpected, _UNEXPECTED_RESULTS)):
            if ids:
                raise _invalid(template.format(where=where, ids=", ".join(map(str, ids))))
        for block in blocks:
            if block["type"] == "tool_result":
                tool = {
                    "role": "tool",
                    "tool_call_id": block["tool_use_id"],
                    "content": _text(block.get("content")),
                }
                out.append(tool)
        text = _text(blocks)
        if text or not any(b["type"] in ("tool_result", "tool_use") for b in blocks):
            out.append({"role": role, "content": text})
        pending = [str(b.get("id")) for b in blocks if b["type"] == "tool_use"] if role == "assistant" else []
    return out


def _check(request: Request, body: dict[str, Any]) -> int:
    """What the real API rejects before generating anything; returns max_tokens."""
    if not request.headers.get("anthropic-version"):
        raise _invalid("anthropic-version: header is required")
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise _invalid("max_tokens: Field required (an integer)")
    if max_tokens < 1:
        raise _invalid("max_tokens: Input should be greater than or equal to 1")
    tools = body.get("tools")
    if tools is not None and not (
        isinstance(tools, list)
        and all(
            isinstance(t, dict) and t.get("name") and isinstance(t.get("input_schema"), dict) for t in tools
        )
    ):
        raise _invalid("tools: each tool needs a name and an input_schema object")
    return max_tokens


def _truncated(reply: Reply, max_tokens: int) -> tuple[list[str], list[dict[str, Any]], int, str]:
    """(text pieces, tool calls, output tokens, stop_reason): the reply, cut at max_tokens like the API does."""
    pieces = reply.pieces
    if reply.completion_tokens <= max_tokens:
        return (
            pieces,
            reply.tool_calls,
            reply.completion_tokens,
            "tool_use" if reply.tool_calls else "end_turn",
        )
    # One piece is one whitespace token; a cut reply never gets as far as its tool calls.
    return pieces[:max_tokens], [], max_tokens, "max_tokens"


def _fragments(text: str) -> list[str]:
    """A tool input's JSON in several `partial_json` pieces (and the empty one the API sends first)."""
    size = max(1, math.ceil(len(text) / 3))
    return ["", *(text[i : i + size] for i in range(0, len(text), size))]


def _tool_id(call: dict[str, Any]) -> str:
    return "toolu_" + str(call["id"]).removeprefix("call_")


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return _sse.encode_json({"type": kind, **data}, event=kind)


def routes(state: core.SimState) -> list[Route]:
    async def messages(request: Request) -> Response:
        body = await core.json_body(request, _bad_request)
        max_tokens = _check(request, body)
        conversation = openai_messages(body)
        request_id = f"req_sim_{next(state.ids)}"
        model = body.get("model")
        if core.missing_model(model):
            return _error(404, "not_found_error", f"model: {model}", request_id)
        reply = make_reply(state, conversation)
        pieces, calls, output_tokens, stop_reason = _truncated(reply, max_tokens)
        if reply.refusal:  # the API's refusal: whatever text came, then stop_reason "refusal"
            pieces, calls, stop_reason = [reply.refusal], [], "refusal"
        usage = {"input_tokens": reply.prompt_tokens, "output_tokens": output_tokens}
        message: dict[str, Any] = {
            "id": f"msg_sim{next(state.ids)}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
        }
        config, counters = state.config, state.stats[ENDPOINT]
        headers = {"request-id": request_id}
        text = "".join(pieces)
        if not body.get("stream"):
            await asyncio.sleep((config.chat_ms + config.token_ms * output_tokens) / 1000)
            counters["completion_tokens"] += output_tokens
            content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text or not calls else []
            content += [
                {"type": "tool_use", "id": _tool_id(c), "name": c["name"], "input": c["arguments"]}
                for c in calls
            ]
            final = {**message, "content": content, "stop_reason": stop_reason, "usage": usage}
            return JSONResponse(final, headers=headers)

        counters["stream_requests"] += 1
        cut = state.should_disconnect(ENDPOINT)

        async def events() -> AsyncIterator[bytes]:
            start_usage = {"input_tokens": reply.prompt_tokens, "output_tokens": 1}
            yield _event("message_start", {"message": {**message, "usage": start_usage}})
            yield _event("ping", {})
            # Latency lives in the generator: message_start goes out at once, the first token after chat_ms.
            await asyncio.sleep(config.chat_ms / 1000)
            index = 0
            if pieces:
                yield _event(
                    "content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}}
                )
                for i, piece in enumerate(pieces):
                    if i:
                        await asyncio.sleep(config.token_ms / 1000)
                    delta = {"type": "text_delta", "text": piece}
                    yield _event("content_block_delta", {"index": index, "delta": delta})
                    counters["completion_tokens"] += 1
                    if cut:
                        raise core.SimulatedDisconnect("stream cut after the first piece (simulated)")
                yield _event("content_block_stop", {"index": index})
                index += 1
            for call in calls:
                block = {"type": "tool_use", "id": _tool_id(call), "name": call["name"], "input": {}}
                yield _event("content_block_start", {"index": index, "content_block": block})
                for fragment in _fragments(json.dumps(call["arguments"])):
                    delta = {"type": "input_json_delta", "partial_json": fragment}
                    yield _event("content_block_delta", {"index": index, "delta": delta})
                yield _event("content_block_stop", {"index": index})
                index += 1
            end = {"stop_reason": stop_reason, "stop_sequence": None}
            yield _event("message_delta", {"delta": end, "usage": {"output_tokens": output_tokens}})
            yield _event("message_stop", {})

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={**headers, "Cache-Control": "no-cache"}
        )

    return [Route(PATH, messages, methods=["POST"])]


WIRE = core.Wire("anthropic", endpoint_of, authorized, render, routes)
