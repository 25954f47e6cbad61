"""OpenTelemetry spans for mini's stages, and the optional Langfuse exporter: the one module that uses OTel.

Spans cost next to nothing until an OpenTelemetry SDK is configured: with only `opentelemetry-api` installed
(a core dependency) no span object is even created. Configure any SDK `TracerProvider` globally
(`opentelemetry.trace.set_tracer_provider`, or `opentelemetry-instrument`), give one to mini alone with
`use_tracer_provider`, or set LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY to export to Langfuse
(`configure_langfuse`; extra `tracing`).

Span names: `mini.query` (root of `query_async` and `stream_async`) with children `mini.rewrite`,
`mini.retrieve` (-> `mini.embed`, `mini.search`, `mini.search.keyword`, `mini.search.prefilter`),
`mini.rerank`, `mini.generate`; `mini.agent` -> `mini.agent.turn` -> `mini.tool` (-> `mini.retrieve` for
`search_documents`); `mini.ingest` -> `mini.ingest.embed_batch`, `mini.ingest.write`.
Attributes: `mini.*` for our own (`mini.question_chars`, `mini.top_k`, `mini.hits`, `mini.leg`,
`mini.batch_size`, `mini.tool`, ...), the GenAI conventions for model calls (`gen_ai.request.model`,
`gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens`). Question and answer texts are never recorded.

Context follows asyncio tasks (OTel keeps it in context variables), so spans of concurrently gathered work
parent correctly. A span must not stay attached across a `yield` of an async generator (each step may run
in another task): generators use `detached_span` and attach it with `use_span` around single steps.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, INVALID_SPAN_CONTEXT, NonRecordingSpan, Span, Status, StatusCode

if TYPE_CHECKING:
    from mini.llms.base import Usage

__all__ = [
    "DISABLED",
    "Attributes",
    "Span",
    "configure_langfuse",
    "detached_span",
    "record_error",
    "set_model_call",
    "span",
    "start_span",
    "suppress",
    "use_span",
    "use_tracer_provider",
]

log = logging.getLogger("mini.tracing")

TRACER_NAME = "mini"
LANGFUSE_DEFAULT_HOST = "https://cloud.langfuse.com"
LANGFUSE_OTEL_PATH = "/api/public/otel/v1/traces"
EXTRA_HINT = "pip install 'mini-rag[tracing]'"

Attributes = Mapping[str, str | bool | int | float]

# The span of an operation whose RAG has tracing switched off (`ObservabilityConfig(enabled=False)`): it
# records nothing, and everything started under it records nothing either.
DISABLED: Span = NonRecordingSpan(INVALID_SPAN_CONTEXT)

_suppressed: ContextVar[bool] = ContextVar("mini_tracing_suppressed", default=False)
_lock = threading.Lock()
_own_provider: trace.TracerProvider | None = None  # use_tracer_provider(); None: the global provider
_cached: tuple[trace.TracerProvider, trace.Tracer] | None = None
_langfuse_checked = False  # the environment is looked at once, on the first span
_langfuse_done = False  # configure_langfuse made its provider, or warned that it cannot
_langfuse_provider: trace.TracerProvider | None = None


def use_tracer_provider(provider: trace.TracerProvider | None) -> None:
    """Send mini's spans to `provider` rather than the global provider (None: back to the global one).

    For applications (and tests) that keep mini's traces apart; OTel's global provider can be set only once.
    """
    global _own_provider, _cached
    _own_provider, _cached = provider, None


def _tracer() -> trace.Tracer | None:
    """mini's tracer, or None when no SDK is configured (the API's provider would only hand out no-ops)."""
    global _cached
    if not _langfuse_checked:
        _langfuse_from_env()
    cached = _cached
    if cached is not None:
        # Valid until `use_tracer_provider` clears it; and the global provider can be set only once (OTel's
        # rule), so asking for it again (an environment lookup per span) could only give the same answer.
        # Until a real provider is there nothing is cached: one configured after the first span is seen.
        return cached[1]
    provider = _own_provider if _own_provider is not None else trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    from mini._version import __version__

    tracer = provider.get_tracer(TRACER_NAME, __version__)
    _cached = (provider, tracer)
    return tracer


def start_span(
    name: str, attributes: Attributes | None = None, *, parent: Span | None = None, enabled: bool = True
) -> Span:
    """A started span that is not made current; the caller ends it. A no-op span (`INVALID_SPAN`) when nothing
    is configured, `DISABLED` when `enabled` is False or the parent (given, else current) is disabled."""
    if not enabled:
        return DISABLED
    ctx = None
    if parent is not None:
        if parent is DISABLED:
            return DISABLED
        if not parent.get_span_context().is_valid:
            return INVALID_SPAN  # a child of nothing records nothing
        ctx = trace.set_span_in_context(parent)
    elif _suppressed.get():
        return DISABLED
    tracer = _tracer()
    if tracer is None:
        return INVALID_SPAN
    return tracer.start_span(name, context=ctx, attributes=attributes)


@contextmanager
def use_span(span: Span) -> Iterator[None]:
    """Make `span` the current span (what new spans and new tasks inherit) inside the block.

    Enter and leave it in the same task: around awaits, never across a `yield` of an async generator.
    """
    if span is DISABLED:
        token = _suppressed.set(True)
        try:
            yield
        finally:
            _suppressed.reset(token)
    elif span.get_span_context().is_valid:
        attached = otel_context.attach(trace.set_span_in_context(span))
        try:
            yield
        finally:
            otel_context.detach(attached)
    else:
        yield


@contextmanager
def suppress(when: bool = True) -> Iterator[None]:
    """No mini spans inside the block (when `when` is true)."""
    if not when:
        yield
        return
    with use_span(DISABLED):
        yield


@contextmanager
def detached_span(
    name: str, attributes: Attributes | None = None, *, parent: Span | None = None, enabled: bool = True
) -> Iterator[Span]:
    """A span for the block, not made current: safe across `yield`s in async generators (see `use_span`).
    An exception leaving the block is recorded and sets the status to ERROR."""
    span = start_span(name, attributes, parent=parent, enabled=enabled)
    if span is INVALID_SPAN:  # nothing configured: nothing to record or end (the common case, kept cheap)
        yield span
        return
    with _ending(span):
        yield span


@contextmanager
def span(
    name: str, attributes: Attributes | None = None, *, parent: Span | None = None, enabled: bool = True
) -> Iterator[Span]:
    """A span for the block, current inside it (spans and tasks started inside are its children).

    An exception leaving the block is recorded and sets the status to ERROR. `enabled=False` (a RAG with
    tracing off) suppresses this span and everything under it. Not for blocks containing `yield` in async
    generators: use `detached_span` there.
    """
    current = start_span(name, attributes, parent=parent, enabled=enabled)
    if current is INVALID_SPAN:
        yield current
        return
    with _ending(current), use_span(current):
        yield current


@contextmanager
def _ending(span: Span) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        record_error(span, exc)
        raise
    except asyncio.CancelledError:
        span.set_attribute("mini.cancelled", True)
        raise
    finally:
        span.end()


def record_error(span: Span, exc: BaseException) -> None:
    """Record `exc` on `span` and mark it failed (for errors that are handled, so never leave a block)."""
    if span.is_recording():
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


def set_model_call(
    span: Span, model: str | None, usage: Usage | None = None, *, operation: str = "chat"
) -> None:
    """GenAI attributes of a model call: the operation, the `provider:model` name split in two, token usage."""
    if not span.is_recording():
        return
    span.set_attribute("gen_ai.operation.name", operation)
    if model:
        provider, _, bare = model.partition(":")
        if bare:
            span.set_attribute("gen_ai.provider.name", provider)
        span.set_attribute("gen_ai.request.model", bare or provider)
    if usage is not None and (usage.prompt_tokens or usage.completion_tokens):
        span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens)


# -- Langfuse --------------------------------------------------------------------------------------------------


def _langfuse_from_env() -> None:
    """On the first span of the process: with both Langfuse keys set and no provider configured, export there."""
    global _langfuse_checked
    _langfuse_checked = True
    if (
        _own_provider is None
        and os.environ.get("LANGFUSE_PUBLIC_KEY")
        and os.environ.get("LANGFUSE_SECRET_KEY")
    ):
        configure_langfuse()


def configure_langfuse(
    *,
    public_key: str | None = None,
    secret_key: str | None = None,
    host: str | None = None,
    export_timeout_s: float = 5.0,
) -> trace.TracerProvider | None:
    """Export every span to Langfuse (its OTLP endpoint) when its keys are set; the provider, or None.

    Keys and host default to LANGFUSE_PUBLIC_KEY, LANGFUSE_SECRET_KEY and LANGFUSE_BASE_URL or LANGFUSE_HOST
    (default https://cloud.langfuse.com). Without both keys this returns None having imported, logged and
    sent nothing. With them: an OTel SDK `TracerProvider` whose `BatchSpanProcessor` exports from a background
    thread (a request never waits for Langfuse; each export gives up after `export_timeout_s`, which also
    bounds the flush at exit), installed as the global provider. If a global SDK provider is already
    configured, it is left alone and mini's spans go there (None is returned). Called by itself on the first
    span of a process when both keys are in the environment; call it at startup to pay its imports (~0.25 s)
    there instead. Idempotent. Needs the extra `tracing`; without it, one warning naming the extra.
    """
    global _langfuse_provider, _langfuse_checked, _langfuse_done
    public_key = public_key or os.environ.get("LANGFUSE_PUBLIC_KEY")
    secret_key = secret_key or os.environ.get("LANGFUSE_SECRET_KEY")
    if not public_key or not secret_key:
        return None
    with _lock:
        _langfuse_checked = True
        if _langfuse_done:
            return _langfuse_provider
        current = trace.get_tracer_provider()
        if not isinstance(current, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
            log.info("Langfuse keys are set, but a tracer provider is already configured: left as it is")
            return None
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError as exc:
            _langfuse_done = True  # warn once, not on every call
            log.warning(
                "Langfuse keys are set, but the OpenTelemetry SDK is missing (%s): no traces are exported. "
                "Install it with: %s",
                exc.name,
                EXTRA_HINT,
            )
            return None
        base = host or os.environ.get("LANGFUSE_BASE_URL") or os.environ.get("LANGFUSE_HOST")
        endpoint = (base or LANGFUSE_DEFAULT_HOST).rstrip("/") + LANGFUSE_OTEL_PATH
        auth = base64.b64encode(f"{public_key}:{secret_key}".encode()).decode()
        exporter = OTLPSpanExporter(
            endpoint=endpoint,
            headers={"Authorization": f"Basic {auth}", "x-langfuse-ingestion-version": "4"},
            timeout=export_timeout_s,
        )
        resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or "mini"})
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(
            BatchSpanProcessor(exporter, export_timeout_millis=export_timeout_s * 1000.0)
        )
        trace.set_tracer_provider(provider)
        _langfuse_provider, _langfuse_done = provider, True
        log.info("exporting traces to Langfuse at %s", endpoint)
        return provider
