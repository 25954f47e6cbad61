"""The AWS Bedrock Runtime Converse wire format of the simulated provider.

`POST /model/{modelId}/converse` answers JSON; `POST /model/{modelId}/converse-stream` answers a binary AWS
event stream (`application/vnd.amazon.eventstream`), framed exactly as botocore's parser expects. Requests are
SigV4-signed by real clients: only the access key id in the `Credential=` scope is checked (or a Bedrock API
key sent as `Authorization: Bearer <key>`); signatures are not verified. Errors are AWS JSON errors: a
`{"message"}` body, the error code in `x-amzn-ErrorType`, the request id in `x-amzn-RequestId`.

Replies come from the shared `make_reply` (deterministic answers, scripted tool calls), so every wire format
says the same words and counts the same tokens.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import struct
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from mini.testing.sim import core
from mini.testing.sim.answers import Reply, make_reply

EVENT_STREAM = "application/vnd.amazon.eventstream"
# The model id may hold ':' '.' '/' (inference-profile ARNs); the path arrives decoded or percent-encoded.
_PATH = re.compile(r"^/model/(?P<model>.+)/(?P<op>converse|converse-stream)$")
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")
_BLOCK_TYPES = frozenset(
    {"text", "toolUse", "toolResult", "image", "document", "reasoningContent", "cachePoint"}
)
_BAD_IDS = itertools.count(1)
_FAULTS = {  # Fault.kind -> (HTTP status, AWS error code)
    "auth": (403, "UnrecognizedClientException"),
    "rate_limit": (429, "ThrottlingException"),
    "server": (500, "InternalServerException"),
}


def endpoint_of(path: str) -> str | None:
    return "converse" if _PATH.match(path) else None


def authorized(headers: dict[bytes, bytes], key: str) -> bool:
    """The SigV4 credential scope names the access key id; a Bedrock API key comes as a bearer token."""
    value = headers.get(b"authorization", b"").decode("latin-1")
    if value.startswith("Bearer "):
        return value.removeprefix("Bearer ") == key
    match = _CREDENTIAL.search(value)
    return match is not None and match.group(1) == key


def aws_error(status: int, code: str, message: str, request_id: str, **headers: str) -> Response:
    """An AWS JSON error as Bedrock sends it (botocore reads the code from `x-amzn-ErrorType`)."""
    return JSONResponse(
        {"message": message},
        status_code=status,
        headers={
            "x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/",
            "x-amzn-RequestId": request_id,
            **headers,
        },
    )


def render(fault: core.Fault) -> Response:
    status, code = _FAULTS.get(fault.kind, _FAULTS["server"])
    extra = core.retry_after_headers(fault.retry_after) if fault.kind == "rate_limit" else {}
    return aws_error(status, code, fault.message, fault.request_id, **extra)


def _validation_error(message: str) -> Response:
    return aws_error(400, "ValidationException", message, f"req_sim_bad_{next(_BAD_IDS)}")


def _invalid(message: str) -> core.BadRequest:
    return core.BadRequest(message, _validation_error)


# --- the binary event stream --------------------------------------------------------------------------------


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return struct.pack("!B", len(raw_name)) + raw_name + struct.pack("!BH", 7, len(raw_value)) + raw_value


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (total length, headers length, CRC32), headers, payload, CRC32."""
    raw_headers = b"".join(_header(name, value) for name, value in headers.items())
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack("!II", total, len(raw_headers))
    prelude += struct.pack("!I", zlib.crc32(prelude))
    message = prelude + raw_headers + payload
    return message + struct.pack("!I", zlib.crc32(message))


def encode_event(event_type: str, body: dict[str, Any]) -> bytes:
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return encode_message(headers, json.dumps(body).encode())


def encode_exception(exception_type: str, message: str) -> bytes:
    """A modelled error inside the stream (e.g. `throttlingException`); botocore raises EventStreamError."""
    headers = {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode_message(headers, json.dumps({"message": message}).encode())


def _fragments(text: str, parts: int = 3) -> list[str]:
    """Tool input JSON cut into pieces (at least two), as Bedrock streams it."""
    size = max(1, -(-len(text) // parts))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


# --- requests -------------------------------------------------------------------------------------------------


def _texts(blocks: list[dict[str, Any]], where: str) -> list[str]:
    texts = []
    for block in blocks:
        if "text" in block:
            if not isinstance(block["text"], str) or not block["text"].strip():
                raise _invalid(f"The text field in the ContentBlock object at {where} is blank.")
            texts.append(block["text"])
    return texts


def openai_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Converse `system` + `messages` -> OpenAI-shaped text messages for `make_reply`, validated like Bedrock
    (roles alternate starting with the user, no blank text, tool blocks need a toolConfig and must answer
    the previous turn's toolUse ids)."""
    system = body.get("system") or []
    messages = body.get("messages")
    if not isinstance(system, list) or not all(isinstance(b, dict) for b in system):
        raise _invalid("system must be a list of content blocks")
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages must be a non-empty list")
    out: list[dict[str, Any]] = []
    system_text = _texts(system, "system")
    if system_text:
        out.append({"role": "system", "content": "\n".join(system_text)})
    has_tools = bool((body.get("toolConfig") or {}).get("tools"))
    previous_role, open_calls = "assistant", set[str]()
    for i, message in enumerate(messages):
        where = f"messages.{i}.content"
        role, content = (
            (message.get("role"), message.get("content")) if isinstance(message, dict) else (None, None)
        )
        if role not in ("user", "assistant"):
            raise _invalid(f"messages.{i}.role must be user or assistant")
        if role == previous_role:
            raise _invalid("A conversation must alternate between user and assistant roles.")
        if not isinstance(content, list) or not content or not all(isinstance(b, dict) for b in content):
            raise _invalid(f"{where} must be a non-empty list of content blocks")
        for block in content:
            if len(block) != 1 or next(iter(block)) not in _BLOCK_TYPES:
                raise _invalid(f"{where} has an unknown content block: {json.dumps(block)[:100]}")
        uses = [b["toolUse"] for b in content if "toolUse" in b]
        results = [b["toolResult"] for b in content if "toolResult" in b]
        if (uses or results) and not has_tools:
            raise _invalid(
                "The toolConfig field must be defined when using toolUse and toolResult content blocks."
            )
        if role == "user" and {r.get("toolUseId") for r in results} != open_calls:
            raise _invalid(
                f"Expected toolResult blocks at {where} for the following Ids: {sorted(open_calls)}"
            )
        for result in results:  # tool output may be empty: no blank-text check here
            output = [b.get("text") or "" for b in result.get("content") or [] if isinstance(b, dict)]
            out.append(
                {"role": "tool", "tool_call_id": result.get("toolUseId"), "content": "\n".join(output)}
            )
        texts = _texts(content, where)
        if texts or not results:
            out.append({"role": role, "content": "\n".join(texts)})
        open_calls = {str(use.get("toolUseId")) for use in uses} if role == "assistant" else set()
        previous_role = role
    return out


def _stop_reason(reply: Reply) -> str:
    return "tool_use" if reply.tool_calls else "end_turn"


def _usage(reply: Reply) -> dict[str, int]:
    prompt, completion = reply.prompt_tokens, reply.completion_tokens
    return {"inputTokens": prompt, "outputTokens": completion, "totalTokens": prompt + completion}


def routes(state: core.SimState) -> list[Route]:
    """`converse` and `converse-stream` under /model/{modelId}/."""

    async def prepare(request: Request) -> tuple[Reply, str]:
        """The reply to a valid request and its request id; raises `BadRequest` (a 400) for an invalid one."""
        model_id = unquote(request.path_params["model_id"])
        messages = openai_messages(await core.json_body(request, _validation_error))
        request_id = f"req_sim_{next(state.ids)}"
        if core.missing_model(model_id):
            raise core.BadRequest(
                f"The provided model identifier is invalid: {model_id}",
                lambda message: aws_error(400, "ValidationException", message, request_id),
            )
        return make_reply(state, messages), request_id

    async def converse(request: Request) -> Response:
        reply, request_id = await prepare(request)
        config, counters = state.config, state.stats["converse"]
        started = time.monotonic()
        await asyncio.sleep((config.chat_ms + config.token_ms * reply.completion_tokens) / 1000)
        counters["completion_tokens"] += reply.completion_tokens
        content: list[dict[str, Any]] = [{"text": reply.content}] if reply.content else []
        content += [
            {"toolUse": {"toolUseId": call["id"], "name": call["name"], "input": call["arguments"]}}
            for call in reply.tool_calls
        ]
        body = {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": _stop_reason(reply),
            "usage": _usage(reply),
            "metrics": {"latencyMs": round((time.monotonic() - started) * 1000)},
        }
        return JSONResponse(body, headers={"x-amzn-RequestId": request_id})

    async def converse_stream(request: Request) -> Response:
        reply, request_id = await prepare(request)
        config, counters = state.config, state.stats["converse"]
        counters["stream_requests"] += 1
        cut = state.should_disconnect("converse")

        async def events() -> AsyncIterator[bytes]:
            started = time.monotonic()
            # Headers go out at once, the first token after chat_ms (like time to first token).
            await asyncio.sleep(config.chat_ms / 1000)
            yield encode_event("messageStart", {"role": "assistant"})
            index = 0
            if reply.content:
                for i, piece in enumerate(reply.pieces):
                    if i:
                        await asyncio.sleep(config.token_ms / 1000)
                    yield encode_event(
                        "contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": piece}}
                    )
                    counters["completion_tokens"] += 1
                    if cut:
                        raise core.SimulatedDisconnect("stream cut after the first piece (simulated)")
                yield encode_event("contentBlockStop", {"contentBlockIndex": index})
                index += 1
            for call in reply.tool_calls:
                start = {"toolUse": {"toolUseId": call["id"], "name": call["name"]}}
                yield encode_event("contentBlockStart", {"contentBlockIndex": index, "start": start})
                for fragment in _fragments(json.dumps(call["arguments"])):
                    delta = {"toolUse": {"input": fragment}}
                    yield encode_event("contentBlockDelta", {"contentBlockIndex": index, "delta": delta})
                yield encode_event("contentBlockStop", {"contentBlockIndex": index})
                index += 1
            yield encode_event("messageStop", {"stopReason": _stop_reason(reply)})
            metrics = {"latencyMs": round((time.monotonic() - started) * 1000)}
            yield encode_event("metadata", {"usage": _usage(reply), "metrics": metrics})

        return StreamingResponse(events(), media_type=EVENT_STREAM, headers={"x-amzn-RequestId": request_id})

    return [
        Route("/model/{model_id:path}/converse", converse, methods=["POST"]),
        Route("/model/{model_id:path}/converse-stream", converse_stream, methods=["POST"]),
    ]


WIRE = core.Wire("bedrock", endpoint_of, authorized, render, routes)
