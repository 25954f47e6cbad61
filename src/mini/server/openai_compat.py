"""An OpenAI-compatible API, so any OpenAI client or chat UI can talk to the RAG.

Point a client at `<server>/v1` (e.g. `OpenAI(base_url="http://127.0.0.1:8000/v1", api_key=<a MINI_API_KEYS
key, or anything when none is set>)`). Routes (they need the API key when MINI_API_KEYS is set, sent as
`Authorization: Bearer <key>` as every OpenAI SDK does):

    GET  /v1/models               one model, `mini-rag` (`owned_by: "mini-rag"`)
    GET  /v1/models/{model}       that model (any name: every name is served by the same RAG)
    POST /v1/chat/completions     `model`, `messages`, `stream`, `stream_options.include_usage`;
                                  `temperature`, `max_tokens`, `top_p`, `user` and unknown fields are
                                  accepted and ignored

Any `model` name is accepted and echoed back. The question is the text of the LAST `user` message (a string,
or the `text` of its `{"type": "text"}` content parts); 422 if there is none or it is empty. The user and
assistant messages before it are the conversation's history: the question is condensed with them into a
standalone question (`metadata.condensed_question`, as in `/v1/chat/stream`), then answered by the one query
pipeline. `system` (and `developer`) messages are added to the answer's instructions.

Extra body fields (the OpenAI SDKs send them with `extra_body={...}`): `top_k`, `filter`, `mode`, as on
`/v1/query`.

Non-stream answers are a `chat.completion` object (`choices[0].message.content` is the answer with `[n]`
citation markers, `usage` counts the tokens the RAG spent, zeros when it answers offline) plus two extra
top-level fields:

    sources     [{number, id, source, score, text, metadata}]: the retrieved chunks; `[n]` in the answer
                refers to `number` n
    citations   [{number, chunk_id, source, text, score}]: the markers the answer actually contains

Streams are OpenAI's server-sent events: `data: <chat.completion.chunk>` frames, the first with
`delta.role = "assistant"`, one per token, a last one with `finish_reason: "stop"`, then (with
`stream_options.include_usage`) a usage chunk with empty `choices`, then `data: [DONE]`. The FIRST chunk has
the extra field `sources`, the `finish_reason` chunk the extra field `citations`. A failure mid-stream sends
`data: {"error": {"type", "message"}}` (this server's error type and message, as in its JSON errors) then
`data: [DONE]` (the OpenAI SDKs raise `APIError` on it).
Closing the stream early closes the upstream LLM stream.

The official SDKs ignore unknown fields but keep them: `completion.model_extra["sources"]` (or
`completion.sources`), likewise on the first stream chunk.

Errors before a response starts have this server's app-wide shape, `{"type": ..., "message": ...}`, not
OpenAI's `{"error": {...}}`; the SDKs still raise the right `APIStatusError` subclass, which they pick by
status code (401 `AuthenticationError`, 422 `UnprocessableEntityError`, 429 `RateLimitError`, ...).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import asdict
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from mini._sse import encode, encode_json
from mini.conversation import as_turns, chat_answer, chat_events
from mini.query.pipeline import Options
from mini.server.deps import check_question, get_rag, get_settings, require_api_key
from mini.server.errors import ApiError, public_event
from mini.server.schemas import ERRORS, AnswerOptions, CitationOut, Hit
from mini.server.sse import SSEResponse, error_frame
from mini.types import StreamEvent

MODEL_ID = "mini-rag"
OWNER = "mini-rag"
_CREATED = int(time.time())  # when this server (module) started: the "model" exists since then

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)], responses=ERRORS)


# -- request ---------------------------------------------------------------------------------------------------


class ContentPart(BaseModel):
    """One part of a message's content; only `{"type": "text"}` parts are read (images etc. are ignored)."""

    model_config = ConfigDict(extra="ignore")

    type: str = "text"
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str = Field(description="system, developer, user, assistant or tool; only user messages are read.")
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        if not self.content:
            return ""
        return "\n".join(part.text for part in self.content if part.type == "text" and part.text)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatCompletionRequest(AnswerOptions):
    """OpenAI's chat completion request; sampling options are accepted and ignored, unknown fields too.
    `top_k`, `filter`, `mode`: this server's extra body fields."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(default=MODEL_ID, description="Any name; echoed back in the response.")
    messages: list[ChatMessage] = Field(description="The question is the last user message.")
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    user: str | None = None


# -- responses (for the OpenAPI docs; the stream's chunks are built as dicts) -----------------------------------


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: str
    logprobs: None = None


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: UsageOut
    sources: list[Hit] = Field(description="Extra: the retrieved chunks; `[n]` in the answer is number n.")
    citations: list[CitationOut] = Field(description="Extra: the `[n]` markers the answer contains.")


# -- routes ------------------------------------------------------------------------------------------------------


def _model_card(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": _CREATED, "owned_by": OWNER}


@router.get("/models", response_model=ModelList, summary="OpenAI-compatible: the models (one, mini-rag)")
async def list_models() -> dict[str, Any]:
    return {"object": "list", "data": [_model_card(MODEL_ID)]}


@router.get("/models/{model}", response_model=ModelCard, summary="OpenAI-compatible: one model")
async def retrieve_model(model: str) -> dict[str, Any]:
    return _model_card(model)  # every name is served by the same RAG, as in chat completions


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    summary="OpenAI-compatible chat completion: answers the last user message (extra: sources, citations)",
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "a chat.completion, or with stream=true chat.completion.chunk events then [DONE]",
        }
    },
)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
    last = _last_user_index(body.messages)
    question = check_question(body.messages[last].text(), get_settings(request))  # 422 before streaming
    history = as_turns(
        {"role": m.role, "content": m.text()} for m in body.messages[:last] if m.role in ("user", "assistant")
    )
    instructions = "\n\n".join(
        m.text() for m in body.messages if m.role in ("system", "developer") and m.text().strip()
    )
    options = Options(**body.answer_options(), instructions=instructions or None)
    pipeline = get_rag(request).pipeline
    if body.stream:
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        # The client keeps this API's history (it sends it with every request): no turn to remember here.
        events = chat_events(pipeline, history, question, options)
        return SSEResponse(_chunks(events, model=body.model, include_usage=include_usage))
    response = await chat_answer(pipeline, history, question, options)
    return {
        "id": _completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": response.answer},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": _usage(response.metadata.get("usage")),
        "sources": [hit.as_source(n) for n, hit in enumerate(response.retrieved_chunks, start=1)],
        "citations": [asdict(c) for c in response.citations],
    }


# -- helpers -----------------------------------------------------------------------------------------------------


def _last_user_index(messages: list[ChatMessage]) -> int:
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].role == "user":
            return index
    raise ApiError(422, "invalid_input", "no user message: the question is the last message with role 'user'")


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def _usage(usage: Mapping[str, Any] | None) -> dict[str, int]:
    """OpenAI's usage from the RAG's (`Usage.as_dict`: prompt/completion tokens; input/output also read)."""
    usage = usage or {}
    prompt = int(usage.get("prompt_tokens", usage.get("input_tokens", 0)) or 0)
    completion = int(usage.get("completion_tokens", usage.get("output_tokens", 0)) or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


_DONE = encode("[DONE]")


def _error(error: Mapping[str, str]) -> bytes:
    return encode_json({"error": dict(error)})


async def _chunks(
    events: AsyncIterator[StreamEvent], *, model: str, include_usage: bool
) -> AsyncGenerator[bytes, None]:
    """The RAG's events as `chat.completion.chunk` frames (see the module docstring for the order)."""
    base = {
        "id": _completion_id(),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        payload: dict[str, Any] = {**base, "choices": [choice]}
        if include_usage:
            payload["usage"] = None  # as OpenAI does: only the last chunk carries usage
        return encode_json({**payload, **extra})

    started = False  # the first chunk (with the role) has gone out
    try:
        async for event in events:
            if event.type == "sources":
                started = True
                yield chunk({"role": "assistant", "content": ""}, sources=event.data)
            elif event.type == "token":
                delta = {"content": event.data}
                if not started:
                    started = True
                    delta = {"role": "assistant", **delta}
                yield chunk(delta)
            elif event.type == "done":
                done = event.data
                yield chunk({}, "stop", citations=done.get("citations", []))
                if include_usage:
                    usage = _usage(done.get("metadata", {}).get("usage"))
                    yield encode_json({**base, "choices": [], "usage": usage})
                yield _DONE
                return
            elif event.type == "error":
                yield _error(public_event(event.data))
                yield _DONE
                return
            # `citation` events: the final chunk lists them all; tool events are not part of this API.
        # The RAG stream always ends with done or error; if not, still end the stream properly.
        yield _DONE
    except Exception as exc:
        # The RAG's stream answers its own failures with an `error` event; one escaping here is unexpected.
        yield _error(error_frame(exc))
        yield _DONE
    finally:
        # A client disconnect closes this generator (see `SSEResponse`); closing the event stream closes the
        # upstream LLM stream at once instead of letting it run to the end.
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()
