"""AWS Bedrock chat over the Converse / ConverseStream API, on aiobotocore (async SigV4 and event streams).

Why aiobotocore and not our aiohttp client: Bedrock needs SigV4 signing, the AWS credential chain (env, profiles,
SSO, roles) and the binary event-stream framing; aiobotocore does all three natively on aiohttp, so the event
loop is never blocked. Its own retries are off: the shared `Limiter` is the one retry policy.

Credentials: the standard AWS chain. `LLMConfig.api_key`, if given, is a Bedrock API key: requests are then
sent unsigned with `Authorization: Bearer <key>` (what botocore itself does for `AWS_BEARER_TOKEN_BEDROCK`,
which also works without any code here). `region` defaults to AWS_REGION/AWS_DEFAULT_REGION, then us-east-1;
`base_url` replaces the endpoint URL (a VPC endpoint, a proxy, the simulator).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence
from typing import Any

import aiohttp
from aiobotocore.session import AioSession
from botocore import UNSIGNED
from botocore import exceptions as boto_errors
from botocore.config import Config
from botocore.eventstream import ParserError as EventStreamParserError

from mini._http import parse_retry_after, request_id, retry_headers
from mini._limits import DEFAULT_MAX_IN_FLIGHT
from mini._portal import PerLoop
from mini.config import LLMConfig, load_settings
from mini.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ProviderConnectionError,
    ProviderError,
    ProviderServerError,
    ProviderStatusError,
    ProviderTimeoutError,
    RateLimitError,
    status_error,
)
from mini.llms.base import (
    Completion,
    Delta,
    Message,
    ProviderChat,
    Tool,
    ToolCall,
    Usage,
    estimate_tokens,
    parse_arguments,
)

PROVIDER = "bedrock"
DEFAULT_REGION = "us-east-1"
log = logging.getLogger("mini.llms")

_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "content_filtered": "content_filter",
    "guardrail_intervened": "content_filter",
}
AUTH_HINT = (
    "check the AWS credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE), the region, "
    "and that the account has been granted access to this model in the Bedrock console"
)
# Error code (lowercased: event-stream exceptions arrive as "throttlingException") -> (error class, the status
# to assume when the error carries none, as inside an event stream). Unknown codes are mapped by HTTP status.
_CODES: dict[str, tuple[type[ProviderStatusError], int]] = {
    "throttlingexception": (RateLimitError, 429),
    "toomanyrequestsexception": (RateLimitError, 429),
    "accessdeniedexception": (AuthenticationError, 403),
    "unrecognizedclientexception": (AuthenticationError, 403),
    "invalidsignatureexception": (AuthenticationError, 403),
    "expiredtokenexception": (AuthenticationError, 403),
    "validationexception": (BadRequestError, 400),
    "resourcenotfoundexception": (BadRequestError, 404),
    "modeltimeoutexception": (ProviderStatusError, 408),  # retryable by status (like OpenAI's 408)
    "internalserverexception": (ProviderServerError, 500),
    "serviceunavailableexception": (ProviderServerError, 503),
    "modelnotreadyexception": (ProviderServerError, 429),  # the model is loading: retry, it is not our load
    "modelerrorexception": (ProviderServerError, 424),
    "modelstreamerrorexception": (ProviderServerError, 424),
}
_CREDENTIAL_ERRORS = (
    boto_errors.NoCredentialsError,
    boto_errors.PartialCredentialsError,
    boto_errors.CredentialRetrievalError,
    boto_errors.NoAuthTokenError,
    boto_errors.TokenRetrievalError,
    boto_errors.SSOError,
)
_CONNECTION_ERRORS = (
    boto_errors.HTTPClientError,  # ConnectionClosedError, ResponseStreamingError, ...
    boto_errors.ConnectionError,  # EndpointConnectionError, ProxyConnectionError
    aiohttp.ClientError,  # raised as is while the event stream is read (ClientPayloadError on a cut)
    EventStreamParserError,  # a corrupt or truncated event-stream frame
    ConnectionError,
)


def map_error(exc: BaseException) -> ProviderError:
    """A botocore/aiobotocore/aiohttp failure as the `mini.errors` type the limiter and callers understand.

    Pure: the caller raises the result `from exc`. ProviderErrors pass through unchanged.
    """
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, boto_errors.ClientError):  # includes EventStreamError (errors inside the stream)
        return _client_error(exc)
    # Timeouts first: botocore's timeout errors are also connection errors.
    if isinstance(exc, (boto_errors.ReadTimeoutError, boto_errors.ConnectTimeoutError, TimeoutError)):
        return ProviderTimeoutError(f"no answer within the timeout ({type(exc).__name__})", provider=PROVIDER)
    if isinstance(exc, _CREDENTIAL_ERRORS):
        return AuthenticationError(f"{type(exc).__name__}: {exc}", provider=PROVIDER, hint=AUTH_HINT)
    if isinstance(exc, boto_errors.ParamValidationError):
        return BadRequestError(str(exc), provider=PROVIDER)
    if isinstance(exc, _CONNECTION_ERRORS):
        return ProviderConnectionError(f"{type(exc).__name__}: {exc}", provider=PROVIDER)
    return ProviderError(f"{type(exc).__name__}: {exc}", provider=PROVIDER)


def _client_error(exc: boto_errors.ClientError) -> ProviderError:
    response: Mapping[str, Any] = exc.response or {}
    error = response.get("Error") or {}
    meta = response.get("ResponseMetadata") or {}
    headers = meta.get("HTTPHeaders") or {}
    code = str(error.get("Code") or "")
    message = str(error.get("Message") or exc)
    detail = f"{code}: {message}" if code else message
    rid = meta.get("RequestId") or request_id(headers)
    retry_after = parse_retry_after(headers)
    cls, default_status = _CODES.get(code.lower(), (None, 0))
    status = int(meta.get("HTTPStatusCode") or default_status)
    if cls is None:
        if status not in (401, 403):
            return status_error(status, detail, provider=PROVIDER, retry_after=retry_after, request_id=rid)
        cls = AuthenticationError
    if cls is RateLimitError:
        return RateLimitError(
            detail, status_code=status, retry_after=retry_after, provider=PROVIDER, request_id=rid
        )
    hint = AUTH_HINT if cls is AuthenticationError else None
    return cls(detail, status_code=status, provider=PROVIDER, request_id=rid, hint=hint)


@contextlib.contextmanager
def _mapped(rid: str | None = None) -> Iterator[None]:
    """Everything that leaves a Bedrock call is a `ProviderError` (the original kept as the cause)."""
    try:
        yield
    except ProviderError:
        raise
    except Exception as exc:
        raise map_error(exc).with_context(request_id=rid) from exc


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI-style content parts
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return "" if content is None else str(content)


def _tool_use(call: Any) -> dict[str, Any]:
    if isinstance(call, ToolCall):
        return {"toolUse": {"toolUseId": call.id, "name": call.name, "input": dict(call.arguments)}}
    function = call.get("function") or call  # a ToolCall-shaped or OpenAI-shaped mapping
    arguments = parse_arguments(function.get("arguments"))
    return {"toolUse": {"toolUseId": call["id"], "name": function["name"], "input": arguments}}


def wire_messages(messages: Sequence[Message]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Canonical messages -> Converse `(system, messages)`.

    System text goes to `system`; tool results become `toolResult` blocks of a user turn. Converse wants
    strictly alternating roles, so consecutive turns of one role (tool results, then a user question) are
    merged into one turn. Blank text blocks are dropped where the turn has other content (Converse rejects them).
    """
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        text = _text_of(message.get("content"))
        if role in ("system", "developer"):
            if text.strip():
                system.append({"text": text})
            continue
        blocks: list[dict[str, Any]]
        if role == "tool":
            role = "user"
            result = {"toolUseId": message.get("tool_call_id"), "content": [{"text": text}]}
            blocks = [{"toolResult": result}]
        else:
            role = "assistant" if role == "assistant" else "user"
            blocks = [{"text": text}] if text.strip() else []
            blocks += [_tool_use(call) for call in message.get("tool_calls") or ()]
            blocks = blocks or [{"text": text}]  # nothing else to send: let the provider judge the empty text
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def wire_tools(tools: Sequence[Tool]) -> list[dict[str, Any]]:
    return [
        {
            "toolSpec": {
                "name": t.name,
                "description": t.description,
                "inputSchema": {"json": dict(t.parameters)},
            }
        }
        for t in tools
    ]


def _usage(raw: Any) -> Usage:
    if not isinstance(raw, Mapping):
        return Usage()
    return Usage(int(raw.get("inputTokens") or 0), int(raw.get("outputTokens") or 0))


_loader_lock = threading.Lock()
_loader: Any = None


def _shared_loader() -> Any:
    """One botocore data loader for every session: parsing the service model costs ~100 ms per session."""
    global _loader
    with _loader_lock:
        if _loader is None:
            _loader = AioSession().get_component("data_loader")
        return _loader


class _ClientSlot:
    """One event loop's Bedrock client, opened on first use (a `PerLoop` factory cannot await)."""

    __slots__ = ("client", "context", "lock")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.context: Any = None  # the async context manager that owns the client's HTTP session
        self.client: Any = None


async def _close_slot(slot: _ClientSlot) -> None:
    async with slot.lock:
        context, slot.context, slot.client = slot.context, None, None
        if context is not None:
            await context.__aexit__(None, None, None)


class _EventStream:
    """An open ConverseStream: its events, the request id errors are reported with, and `aclose`."""

    __slots__ = ("events", "rid")

    def __init__(self, events: Any, rid: str | None) -> None:
        self.events = events
        self.rid = rid

    async def aclose(self) -> None:
        self.events.close()  # closes the connection, which tells Bedrock to stop generating


class BedrockChat(ProviderChat):
    """Chat through Bedrock's Converse API (any model that supports it). Construction does no I/O."""

    def __init__(self, config: LLMConfig) -> None:
        self.region = config.region or load_settings().aws_region or DEFAULT_REGION
        self.endpoint_url = config.base_url.rstrip("/") if config.base_url else None
        if config.api_key is not None and not isinstance(config.api_key, str):
            # Bedrock API keys are long-lived bearer keys; refreshing credentials come from the AWS chain.
            raise ConfigurationError(
                "a callable api_key is not supported for Bedrock: pass the Bedrock API key as a string, or use "
                "AWS credentials (the AWS credential chain refreshes them)"
            )
        self._api_key = config.api_key or None
        # Quotas are per account and region: key the shared limits by endpoint and the credential in use
        # (read from the environment without I/O; a profile name stands in for the keys it holds).
        credential = self._api_key or os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")
        url = self.endpoint_url or f"https://bedrock-runtime.{self.region}.amazonaws.com"
        super().__init__(config, PROVIDER, url, credential)
        self._clients: PerLoop[_ClientSlot] = PerLoop(_ClientSlot, aclose=_close_slot)

    # --- the client --------------------------------------------------------------------------------------

    async def _client(self) -> Any:
        slot = self._clients.get()
        if slot.client is None:
            async with slot.lock:
                if slot.client is None:
                    slot.context, slot.client = await self._open_client()
        return slot.client

    async def _open_client(self) -> tuple[Any, Any]:
        # One session per loop (credential refreshers hold loop-bound locks); the parsed model is shared.
        session = AioSession()
        session.register_component("data_loader", _shared_loader())
        options: dict[str, Any] = {
            "retries": {"total_max_attempts": 1, "mode": "standard"},  # the Limiter retries, not botocore
            "max_pool_connections": max(self.config.max_concurrency or DEFAULT_MAX_IN_FLIGHT, 10),
            "connect_timeout": self.config.timeout,
            "read_timeout": self.config.timeout,
        }
        credentials: dict[str, str] = {}
        if self._api_key:
            # A Bedrock API key replaces SigV4: send unsigned, add the bearer header in `_before_send`. The
            # placeholder keys stop botocore from searching the credential chain (files, instance metadata).
            options["signature_version"] = UNSIGNED
            credentials = {"aws_access_key_id": "bedrock-api-key", "aws_secret_access_key": "unused"}
        context = session.create_client(
            "bedrock-runtime",
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            config=Config(**options),
            **credentials,
        )
        client = await context.__aenter__()
        client.meta.events.register("before-send.bedrock-runtime", self._before_send)
        log.debug("bedrock: client opened (region %s, endpoint %s)", self.region, self.endpoint_url or "AWS")
        return context, client

    def _before_send(self, request: Any, **_: Any) -> None:
        """Runs in the calling task, so it sees the limiter's attempt number. Headers set here are not signed
        (the request is already signed), and `request.headers` is case-insensitive: assignment replaces."""
        for name, value in retry_headers().items():
            request.headers[name] = value
        if self._api_key:
            request.headers["Authorization"] = f"Bearer {self._api_key}"

    # --- requests ----------------------------------------------------------------------------------------

    def _body(
        self, messages: Sequence[Message], temperature: float, limit: int | None, tools: Sequence[Tool] | None
    ) -> dict[str, Any]:
        system, turns = wire_messages(messages)
        inference: dict[str, Any] = {"temperature": temperature}
        if limit is not None:
            inference["maxTokens"] = limit
        request: dict[str, Any] = {"modelId": self.model, "messages": turns, "inferenceConfig": inference}
        if system:
            request["system"] = system
        if tools:
            request["toolConfig"] = {"tools": wire_tools(tools)}
        if self.config.extra_params:  # model-specific fields (top_k, thinking, ...), passed through
            request["additionalModelRequestFields"] = dict(self.config.extra_params)
        return request

    def _tokens(self, request: dict[str, Any]) -> int:
        return estimate_tokens(
            [request.get("system"), request["messages"]], request["inferenceConfig"].get("maxTokens")
        )

    async def _send(self, request: dict[str, Any]) -> Any:
        with _mapped():
            client = await self._client()
            return await client.converse(**request)

    async def _open(self, request: dict[str, Any]) -> _EventStream:
        with _mapped():
            client = await self._client()
            response = await client.converse_stream(**request)
        return _EventStream(response["stream"], (response.get("ResponseMetadata") or {}).get("RequestId"))

    def _parse(self, data: Any) -> Completion:
        try:
            blocks = data["output"]["message"]["content"]
            text = "".join(block["text"] for block in blocks if "text" in block)
            calls = tuple(
                ToolCall(use["toolUseId"], use["name"], parse_arguments(use.get("input")))
                for block in blocks
                if (use := block.get("toolUse"))
            )
        except (KeyError, TypeError, AttributeError) as exc:
            rid = (data.get("ResponseMetadata") or {}).get("RequestId") if isinstance(data, dict) else None
            raise ProviderError(
                f"malformed Converse response: {str(data)[:200]}",
                provider=PROVIDER,
                model=self.model,
                request_id=rid,
            ) from exc
        stop = data.get("stopReason")
        return Completion(
            text=text,
            model=self.model,
            usage=_usage(data.get("usage")),
            finish_reason=_FINISH.get(stop, stop),
            tool_calls=calls,
        )

    async def _deltas(self, stream: _EventStream) -> AsyncGenerator[Delta, None]:
        calls: dict[int, dict[str, str]] = {}  # content block index -> the tool call streamed in it

        def call_at(body: Mapping[str, Any]) -> dict[str, str]:
            index = int(body.get("contentBlockIndex", 0))
            return calls.setdefault(index, {"id": "", "name": "", "input": ""})

        usage: Usage | None = None
        stop: str | None = None
        stopped = False
        # Exception events (modelStreamErrorException, throttlingException) arrive as EventStreamError, a cut
        # connection as aiohttp errors: both leave as ProviderErrors carrying the request id.
        rid = stream.rid
        with _mapped(rid):
            async for event in stream.events:
                if "contentBlockDelta" in event:
                    body = event["contentBlockDelta"]
                    delta = body.get("delta") or {}
                    if delta.get("text"):
                        yield Delta(text=delta["text"])
                    elif "toolUse" in delta:
                        call_at(body)["input"] += delta["toolUse"].get("input") or ""
                elif "contentBlockStart" in event:
                    body = event["contentBlockStart"]
                    start = (body.get("start") or {}).get("toolUse")
                    if start:
                        call = call_at(body)
                        call["id"], call["name"] = start.get("toolUseId") or "", start.get("name") or ""
                elif "messageStop" in event:
                    stopped = True
                    stop = event["messageStop"].get("stopReason")
                elif "metadata" in event:
                    usage = _usage(event["metadata"].get("usage"))
        if not stopped:
            raise ProviderConnectionError(
                "the stream ended before the model finished", provider=PROVIDER, request_id=rid
            )
        if usage is not None:
            self.usage += usage
        tool_calls = tuple(
            ToolCall(id=p["id"], name=p["name"], arguments=parse_arguments(p["input"]))
            for _, p in sorted(calls.items())
        )
        # One closing delta with everything only known at the end.
        yield Delta(usage=usage, finish_reason=_FINISH.get(stop or "", stop), tool_calls=tool_calls)

    async def aclose(self) -> None:
        """Close the running loop's client (other loops' clients close when their loops shut down)."""
        await self._clients.aclose_current()
