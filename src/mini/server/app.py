"""`create_app(rag)`: the FastAPI app behind `mini serve`. Components are created once, in the lifespan.

Routes (all but /health and the static chat page need the API key when MINI_API_KEYS is set; so do /docs,
/redoc and /openapi.json unless MINI_PUBLIC_DOCS=true):
    GET  /health                      liveness
    POST /v1/query                    answer, sources, citations, timings
    POST /v1/query/stream             SSE: sources, token*, citation*, done | error
    GET  /v1/stats                    documents, chunks, models, store, the server's own loop lag, open streams
and the routers of `mini.server.chat`, `.documents`, `.openai_compat` and `.agent` (see their modules), and `/`
(the page). In front of them all, `mini.server.guard.Guard` checks the Host, the Origin of writes and the key
before any body is read.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from starlette.responses import StreamingResponse

from mini._limits import share_limits
from mini._version import __version__
from mini.server import agent, chat, documents, errors, library, openai_compat
from mini.server.cancel import CancelOnDisconnect
from mini.server.deps import check_question, get_rag, get_settings, require_api_key
from mini.server.guard import Guard
from mini.server.limits import BodyLimit
from mini.server.monitor import LoopLagMonitor, StreamGauge
from mini.server.schemas import ERRORS, Health, QueryRequest, QueryResponse
from mini.server.settings import ServerSettings
from mini.server.sse import sse_response

if TYPE_CHECKING:
    from mini.rag import AgenticRAG

log = logging.getLogger("mini.server")
STATIC = Path(__file__).parent / "static"

api = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)], responses=ERRORS)


@api.post("/query", response_model=QueryResponse, summary="Answer a question, with sources and citations")
async def query(body: QueryRequest, request: Request) -> dict[str, Any]:
    question = check_question(body.question, get_settings(request))
    response = await get_rag(request).query_async(question, **body.answer_options())
    data = response.to_dict()
    metadata = dict(response.metadata)
    return {
        "answer": response.answer,
        "sources": [{**hit, "number": n} for n, hit in enumerate(data["retrieved_chunks"], start=1)],
        "citations": [asdict(c) for c in response.citations],
        "rewritten_queries": response.rewritten_queries,
        "timings_ms": metadata.pop("timings_ms", {}),
        "metadata": metadata,
    }


@api.post(
    "/query/stream",
    summary="Stream an answer as server-sent events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "sources, token*, citation*, done"}
    },
)
async def query_stream(body: QueryRequest, request: Request) -> StreamingResponse:
    question = check_question(body.question, get_settings(request))  # 422 before the stream starts
    return sse_response(get_rag(request).stream_async(question, **body.answer_options()))


@api.get("/stats", summary="What is indexed, which models serve it, and the server's loop lag")
async def stats(request: Request, lag_last_s: float | None = None) -> dict[str, Any]:
    """`lag_last_s`: summarise the loop lag and the peak of open event streams over the last N seconds only
    (default: every kept sample)."""
    # Summarised before any await: counting documents may first import the store's Python layer in a thread
    # (seconds of GIL contention, measured: lag max 1.9 s), and that must not land in the window asked about.
    lag = request.app.state.lag.summary(lag_last_s)
    streams = request.app.state.streams.summary(lag_last_s)
    rag = get_rag(request)
    chunks = await rag.vector_store.count_async()
    return {
        "documents": await _documents(request, chunks),
        "chunks": chunks,
        "store": {"uri": repr(rag.vector_store), "collection": rag.vector_store.collection_name},
        "embedding_model": rag.embedding_model.name,
        "llm": rag.llm_name,
        "loop_lag": lag,
        "streams": streams,
        **{name: await _extra(extra, request) for name, extra in request.app.state.stats_extras.items()},
    }


async def _extra(extra: Callable[[Request], Any], request: Request) -> Any:
    """A feature's stats section; one that needs I/O (Redis) returns an awaitable."""
    value = extra(request)
    return await value if inspect.isawaitable(value) else value


_DOCUMENTS_TTL_S = 30.0
_GC_THRESHOLDS = (20_000, 50, 1_000)


async def _documents(request: Request, chunks: int) -> int:
    """Distinct files/sources indexed. Counting them reads every row's metadata, so the number is cached for
    30 s (and while the chunk count is unchanged): stats polling cannot turn into a full scan per request."""
    cached = getattr(request.app.state, "documents_cache", None)
    now = time.monotonic()
    if cached is not None and cached[1] == chunks and now - cached[0] < _DOCUMENTS_TTL_S:
        return int(cached[2])
    rows = await get_rag(request).vector_store.get_async()
    count = len({r.metadata.get("origin") or r.metadata.get("source") for r in rows})
    request.app.state.documents_cache = (now, chunks, count)
    return count


async def _warm_up(rag: AgenticRAG) -> None:
    """Load the embedding model and open the store now, so the first user does not wait for either."""
    try:
        await rag.embedding_model.embed_query_async("warm up")
        await rag.vector_store.count_async()
    except Exception as exc:  # a server with a cold component still starts; the first request reports it
        log.warning("warm-up failed: %s", exc)


def create_app(rag: AgenticRAG | None = None, *, settings: ServerSettings | None = None) -> FastAPI:
    """The app serving `rag` (default: `AgenticRAG()` from the environment, closed on shutdown)."""
    settings = settings or ServerSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from mini.rag import AgenticRAG

        if settings.redis_url:
            # Replicas share the provider limits too, whether the URL came from the environment, `.env` or
            # mini.toml. Limiters are bound when a model is built: this reaches the models built from here on
            # (the default RAG below); `mini serve` calls it before building its RAG as well.
            share_limits(settings.redis_url)
        owned = rag is None
        app.state.rag = rag if rag is not None else AgenticRAG()
        app.state.settings = settings
        app.state.lag = LoopLagMonitor(settings.lag_sample_s)
        app.state.streams = StreamGauge()
        app.state.stats_extras = {}
        app.state.health_checks = {}  # name -> async () -> None | reason it cannot serve (e.g. Redis down)
        for setup in _SETUP:
            await setup(app)
        await _warm_up(app.state.rag)
        # Long-lived objects made so far (modules, models, clients) never become garbage: moving them out of
        # the collector's view keeps full collections (which stall the loop) short for the server's lifetime.
        gc.collect()
        gc.freeze()
        # And collect less often. Under load every collection finds next to nothing (refcounting frees what a
        # request leaves behind) but walks every young object: at 1,000 streams, pauses of 10-120 ms several
        # times a second and full ones of ~0.6 s (collected 0). Measured with these thresholds instead of the
        # default (700, 10, 10): loop lag p99 124 ms vs 0.4-1 s, same peak RSS (bench/server_load.py).
        gc.set_threshold(*_GC_THRESHOLDS)
        app.state.lag.start()
        try:
            yield
        finally:
            await app.state.lag.stop()
            for teardown in reversed(_TEARDOWN):
                await teardown(app)
            if owned:
                await app.state.rag.aclose()

    app = FastAPI(
        title="Mini RAG",
        version=__version__,
        description="Retrieval-augmented answers with sources and citations; SSE streaming.",
        lifespan=lifespan,
    )
    errors.install(app)
    app.add_middleware(CancelOnDisconnect)  # innermost: a client that leaves cancels its route's work
    # Then, inside out: BodyLimit, the Guard (host, origin, key: before any body byte is read), and CORS
    # outermost, so that the guard's 401/403 still carry the CORS headers an allowed page needs to read them.
    # Only POST /v1/documents takes large bodies; every other route's JSON is parsed on the event loop.
    app.add_middleware(
        BodyLimit,
        max_bytes=min(settings.max_query_body_bytes, settings.max_body_bytes),
        larger={"/v1/documents": settings.max_body_bytes},
    )
    app.add_middleware(Guard, settings=settings, public_paths=_public_paths(app, settings))
    if settings.origins():
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.origins(),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["authorization", "content-type", "x-api-key"],
        )

    @app.get("/health", response_model=Health, summary="Liveness (no authentication)")
    async def health() -> dict[str, str]:
        # Answers even when a shared component is down (status "degraded" and why): liveness, not readiness.
        checks = getattr(app.state, "health_checks", {}).values()
        reasons = [reason for reason in await asyncio.gather(*(check() for check in checks)) if reason]
        if reasons:
            return {"status": "degraded", "version": __version__, "reason": "; ".join(reasons)}
        return {"status": "ok", "version": __version__}

    app.include_router(api)
    for router in _ROUTERS:
        app.include_router(router)
    if STATIC.is_dir():
        from fastapi.staticfiles import StaticFiles

        app.mount("/", StaticFiles(directory=STATIC, html=True), name="ui")
    return app


def _public_paths(app: FastAPI, settings: ServerSettings) -> set[str]:
    """What GET/HEAD may fetch without a key: /health, the chat page and its files (the page asks for the key
    itself), and the API docs if MINI_PUBLIC_DOCS is set."""
    public = {"/health"}
    if STATIC.is_dir():
        public |= {"/"} | {"/" + p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*") if p.is_file()}
    if settings.public_docs:
        docs = (app.docs_url, app.redoc_url, app.openapi_url, app.swagger_ui_oauth2_redirect_url)
        public |= {path for path in docs if path}
    return public


# The feature modules, imported explicitly: a missing one is an import error, never a silently smaller API.
_ROUTERS: list[APIRouter] = [
    chat.router,
    documents.router,
    library.router,
    openai_compat.router,
    agent.router,
]
# Run in the lifespan in this order (teardowns reversed): documents' jobs stop before chat's sessions go.
_SETUP: list[Callable[[FastAPI], Awaitable[None]]] = [chat.setup, documents.setup]
_TEARDOWN: list[Callable[[FastAPI], Awaitable[None]]] = [chat.teardown, documents.teardown]
