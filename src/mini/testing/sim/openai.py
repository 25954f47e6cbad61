"""The OpenAI wire format of the simulated provider: `/v1/chat/completions`, `/v1/embeddings`, `/v1/models`, and
Azure OpenAI's deployment paths (`/openai/deployments/{name}/chat/completions|embeddings?api-version=...`).

`response_format` (json_schema) is honoured: the answer is JSON fitting the schema. A scripted
`{"refusal": "..."}` is answered the way OpenAI refuses (`message.refusal`, content null)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from mini import _sse
from mini.testing.sim import core
from mini.testing.sim.answers import WORD, Reply, embed_text, make_reply, response_schema

AZURE_PREFIX = "/openai/deployments/"
_AZURE_OPERATIONS = {"chat/completions": "chat", "embeddings": "embeddings"}


def endpoint_of(path: str) -> str | None:
    if path.startswith(AZURE_PREFIX):
        _deployment, _, operation = path.removeprefix(AZURE_PREFIX).partition("/")
        return _AZURE_OPERATIONS.get(operation)
    # "" = ours but not counted (listing models): credentials are checked, no other fault applies.
    return {"/v1/chat/completions": "chat", "/v1/embeddings": "embeddings", "/v1/models": ""}.get(path)


def authorized(headers: dict[bytes, bytes], api_key: str) -> bool:
    """A Bearer token (OpenAI, Azure Entra ID) or Azure's `api-key` header."""
    if headers.get(b"api-key", b"").decode(errors="replace") == api_key:
        return True
    return headers.get(b"authorization", b"").decode(errors="replace") == f"Bearer {api_key}"


def _azure_checked(request: Request) -> None:
    """Azure answers a deployment path without `api-version` with an error, as here."""
    if request.url.path.startswith(AZURE_PREFIX) and not request.query_params.get("api-version"):
        raise core.BadRequest("the api-version query parameter is required (Azure OpenAI)")


def render(fault: core.Fault) -> Response:
    request_id = {"x-request-id": fault.request_id}
    if fault.kind == "auth":
        body = core.openai_error_body(fault.message, "invalid_request_error", "invalid_api_key")
        return JSONResponse(body, status_code=401, headers=request_id)
    if fault.kind == "rate_limit":
        body = core.openai_error_body(fault.message, "rate_limit_exceeded", "rate_limit_exceeded")
        headers = {**core.retry_after_headers(fault.retry_after), **request_id}
        return JSONResponse(body, status_code=429, headers=headers)
    body = core.openai_error_body(fault.message, "server_error", None)
    return JSONResponse(body, status_code=500, headers=request_id)


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


def routes(state: core.SimState) -> list[Route]:
    """The OpenAI-compatible endpoints under /v1."""

    async def embeddings(request: Request) -> Response:
        _azure_checked(request)
        body = await core.json_body(request)
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(inputs, list) or not all(isinstance(text, str) for text in inputs):
            raise core.BadRequest("input must be a string or a list of strings")
        config = state.config
        if config.reject_text and any(config.reject_text in text for text in inputs):
            raise core.BadRequest(f"input contains {config.reject_text!r}, which this model rejects")
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
        tokens = sum(len(WORD.findall(text)) for text in inputs)
        state.stats["embeddings"]["inputs_embedded"] += len(inputs)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return JSONResponse(
            {"object": "list", "data": data, "model": body.get("model", "sim-embed"), "usage": usage}
        )

    async def chat(request: Request) -> Response:
        _azure_checked(request)
        body = await core.json_body(request)
        body.setdefault("model", request.path_params.get("deployment"))
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise core.BadRequest("messages must be a list of objects")
        if core.missing_model(body.get("model")):
            error = core.openai_error_body(
                f"The model `{body['model']}` does not exist.", "invalid_request_error", None
            )
            return JSONResponse(
                error, status_code=404, headers={"x-request-id": f"req_sim_{next(state.ids)}"}
            )
        reply = make_reply(state, messages, response_schema(body))
        content: str | None = reply.content if reply.content or not reply.tool_calls else None
        if reply.refusal:
            content = None
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
            message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": reply.refusal}
            if tool_calls:
                message["tool_calls"] = tool_calls
            choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
            return JSONResponse({**base, "object": "chat.completion", "choices": [choice], "usage": usage})

        counters["stream_requests"] += 1
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        cut = state.should_disconnect("chat")

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
            payload: dict[str, Any] = {**base, "object": "chat.completion.chunk", "choices": [choice]}
            if include_usage:
                payload["usage"] = None
            return _sse.encode_json(payload)

        async def events() -> AsyncIterator[bytes]:
            # Latency lives in the generator: headers go out at once, the first token after chat_ms (like TTFT).
            await asyncio.sleep(config.chat_ms / 1000)
            if reply.refusal:
                yield chunk({"role": "assistant", "content": None, "refusal": reply.refusal})
            for i, piece in enumerate(reply.pieces if content else []):
                if i:
                    await asyncio.sleep(config.token_ms / 1000)
                yield chunk({"role": "assistant", "content": piece} if i == 0 else {"content": piece})
                counters["completion_tokens"] += 1
                if cut:
                    raise core.SimulatedDisconnect("stream cut after the first piece (simulated)")
            if tool_calls:
                deltas = [{"index": i, **call} for i, call in enumerate(tool_calls)]
                yield chunk({"role": "assistant", "content": None, "tool_calls": deltas})
            yield chunk({}, finish)
            if include_usage:
                final: dict[str, Any] = {
                    **base,
                    "object": "chat.completion.chunk",
                    "choices": [],
                    "usage": usage,
                }
                yield _sse.encode_json(final)
            yield _sse.encode("[DONE]")

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
        Route(AZURE_PREFIX + "{deployment}/embeddings", embeddings, methods=["POST"]),
        Route(AZURE_PREFIX + "{deployment}/chat/completions", chat, methods=["POST"]),
    ]


WIRE = core.Wire("openai", endpoint_of, authorized, render, routes)
