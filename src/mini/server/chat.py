"""Conversational answers: `POST /v1/chat/stream` (SSE) and the session routes.

    POST   /v1/chat/stream          {session_id?, message, top_k?} -> sources, token*, citation*, done | error
    GET    /v1/sessions/{id}        the session's history
    DELETE /v1/sessions/{id}        forget it (and drop its documents)

A turn: condense the message with the session's history into a standalone question (one LLM call; skipped
offline or without history) -> rewrite it into search queries (as /v1/query does) -> embed once and search the
global collection and the session's own collection concurrently -> one ranking (see `_retrieve`) -> rerank
-> stream the answer (`AgenticRAG.stream_answer_async`). Only a completed answer becomes part of the history.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from pydantic import BaseModel, Field
from starlette.responses import StreamingResponse

from mini._limits import is_retryable
from mini._tasks import gather_all
from mini.errors import ProviderError, error_payload, log_failure
from mini.llms.base import Usage
from mini.query.fusion import rrf
from mini.server import sessions as sessions_module
from mini.server.deps import check_question, get_rag, get_settings, require_api_key, state
from mini.server.errors import ApiError
from mini.server.schemas import ERRORS
from mini.server.sessions import SESSION_ID_PATTERN, Session, SessionStore, Turn, check_session_id
from mini.server.sse import sse_response
from mini.types import RetrievalResult, StreamEvent

if TYPE_CHECKING:
    from mini.query.pipeline import AgenticRAG

log = logging.getLogger("mini.server")

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)], responses=ERRORS, tags=["chat"])

CONDENSE_SYSTEM = (
    "You rewrite the last message of a conversation as a standalone question for a document search engine. "
    "Resolve pronouns and references (it, they, that, there, then) with the conversation so the question "
    "can be understood without it. Keep the user's language and intent; do not answer the question. "
    "Reply with the question only, on one line."
)
# Earlier answers are cut to this many characters in the condense prompt: their gist is enough to resolve
# references, and the prompt stays small whatever the history holds.
_ANSWER_CHARS_IN_PROMPT = 1_000
_CONDENSE_MAX_TOKENS = 200
_LABEL = re.compile(r"^\s*(?:standalone question|question)\s*:\s*", re.IGNORECASE)


class ChatRequest(BaseModel):
    session_id: str | None = Field(
        default=None,
        pattern=SESSION_ID_PATTERN,
        description="1-128 characters of A-Z a-z 0-9 _ -; a new session (with a generated id) if absent.",
    )
    message: str = Field(description="The user's message; 1 to MINI_MAX_QUESTION_CHARS characters.")
    top_k: int | None = Field(default=None, ge=1, le=100, description="Chunks retrieved per query.")


def condense_messages(history: Sequence[Turn], message: str) -> list[dict[str, str]]:
    lines = []
    for turn in history:
        lines.append(f"User: {' '.join(turn.question.split())}")
        lines.append(f"Assistant: {' '.join(turn.answer.split())[:_ANSWER_CHARS_IN_PROMPT]}")
    user = (
        "Conversation:\n" + "\n".join(lines) + f"\n\nLast message: {message.strip()}\n\nStandalone question:"
    )
    return [{"role": "system", "content": CONDENSE_SYSTEM}, {"role": "user", "content": user}]


def parse_condensed(text: str) -> str:
    """The model's question: its first non-empty line, without a "Question:" label or quotes."""
    for line in text.splitlines():
        question = _LABEL.sub("", line).strip().strip('"').strip("'").strip()
        if question:
            return question
    return ""


class _Run:
    """What one chat turn accumulates before the answer streams (metadata for the `done` event)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.timings: dict[str, float] = {}
        self.metadata: dict[str, Any] = {}
        self.warnings: list[str] = []
        self.usage = Usage()
        self.queries: list[str] = []

    def add_time(self, stage: str, since: float) -> None:
        self.timings[stage] = round((time.perf_counter() - since) * 1000.0, 3)


async def _condense(rag: AgenticRAG, history: list[Turn], message: str, turn: _Run) -> str:
    if not history:
        turn.metadata["condense"] = "skipped: no history"
        return message
    if rag.llm is None:
        turn.metadata["condense"] = "skipped: no LLM configured"
        return message
    since = time.perf_counter()
    try:
        completion = await rag.llm.complete(
            condense_messages(history, message), temperature=0.0, max_tokens=_CONDENSE_MAX_TOKENS
        )
        turn.usage = turn.usage + completion.usage
        question = parse_condensed(completion.text)
        if not question:
            raise ValueError("the model returned no question")
    except Exception as exc:
        # Condensing only helps follow-ups find their context: the message as given is still a fair search.
        turn.metadata["condense"] = "failed"
        turn.warnings.append(f"condensing the message with the history failed, searched it as given: {exc}")
        log.info("condensing failed: %s", exc)
        return message
    finally:
        turn.add_time("condense", since)
    turn.metadata["condense"] = "ok"
    turn.metadata["condensed_question"] = question
    return question


async def _rewrite(rag: AgenticRAG, question: str, turn: _Run) -> list[str]:
    """The search queries, with the same rules as `AgenticRAG.query_async`'s rewrite stage."""
    if rag.llm is None:
        turn.metadata["rewrite"] = "skipped: no LLM configured"
        return [question]
    if not rag.retrieval_config.use_query_rewriting:
        turn.metadata["rewrite"] = "disabled"
        return [question]
    since = time.perf_counter()
    try:
        queries = await rag.rewrite_query_async(question)
        turn.metadata["rewrite"] = "ok"
        return queries
    except ProviderError as exc:
        if not is_retryable(exc):
            raise
        turn.metadata["rewrite"] = "failed"
        turn.warnings.append(f"query rewriting failed, searched the question only: {exc}")
        return [question]
    finally:
        turn.add_time("rewrite", since)


async def _retrieve(
    rag: AgenticRAG, session: Session, queries: list[str], top_k: int | None, turn: _Run
) -> list[RetrievalResult]:
    """Every query in the global collection and in the session's, concurrently, then one ranking.

    The queries are embedded once for both searches. Per query, the two stores' hits are merged by score:
    the same query vector against collections of the same embedding model and backend gives comparable
    cosine scores, whereas fusing the two rankings with RRF would rank each store's best hit equal whatever
    its relevance (one unrelated session upload would always be a top source). Across query variants the
    scores are not comparable, so those rankings are fused with RRF, as `AgenticRAG` does.
    The session's collection is searched only if documents were uploaded to it: other sessions' documents
    are never candidates, and global queries (/v1/query) never see any session's.
    """
    k = top_k or rag.retrieval_config.top_k
    since = time.perf_counter()
    vectors = list(await rag.embedding_model.embed_async(queries, input_type="query"))
    turn.add_time("embed", since)
    own = session.store  # read once: the session may end while we search
    # The session's store first: on an exact score tie its own document wins.
    stores = [rag.vector_store] if own is None else [own, rag.vector_store]
    turn.metadata["session_documents"] = own is not None
    since = time.perf_counter()
    per_store = await gather_all(s.search_many_async(vectors, k) for s in stores)  # at most two
    turn.add_time("search", since)
    rankings = [merge_by_score(hits, k) for hits in zip(*per_store, strict=True)]
    if len(rankings) == 1:
        return rankings[0]
    return rrf(rankings, k=rag.retrieval_config.rrf_k)[:k]


def merge_by_score(rankings: Sequence[Sequence[RetrievalResult]], k: int) -> list[RetrievalResult]:
    """One query's hits from several stores, best score first, each id once, at most `k`."""
    if len(rankings) == 1:
        return list(rankings[0][:k])
    seen: set[str] = set()
    merged = []
    for hit in sorted((h for ranking in rankings for h in ranking), key=lambda h: -h.score):  # stable
        if hit.id not in seen:
            seen.add(hit.id)
            merged.append(hit)
    return merged[:k]


def _done(data: dict[str, Any], session: Session, turn: _Run) -> dict[str, Any]:
    """The pipeline's `done` payload with the turn's own stages, warnings and the session id."""
    inner = dict(data.get("metadata") or {})
    timings = {**inner.pop("timings_ms", {}), **turn.timings}
    timings["total"] = round((time.perf_counter() - turn.started) * 1000.0, 3)
    usage = dict(inner.pop("usage", {}))
    for name, value in turn.usage.as_dict().items():
        usage[name] = usage.get(name, 0) + value
    warnings = [*turn.warnings, *inner.pop("warnings", [])]
    metadata = {**inner, **turn.metadata, "timings_ms": timings, "usage": usage}
    if warnings:
        metadata["warnings"] = warnings
    return {**data, "rewritten_queries": turn.queries, "metadata": metadata, "session_id": session.id}


async def _chat_events(
    rag: AgenticRAG, session: Session, message: str, top_k: int | None
) -> AsyncIterator[StreamEvent]:
    turn = _Run()
    try:
        question = await _condense(rag, list(session.turns), message, turn)
        turn.queries = await _rewrite(rag, question, turn)
        candidates = await _retrieve(rag, session, turn.queries, top_k, turn)
        since = time.perf_counter()
        chunks = await rag.rerank_async(question, candidates)
        turn.add_time("rerank", since)
        turn.metadata["num_candidates"] = len(candidates)
        turn.metadata["reranker"] = rag.reranker.name if rag.retrieval_config.use_reranking else "disabled"
    except Exception as exc:
        log_failure(log, "chat turn failed", exc)
        yield StreamEvent("error", error_payload(exc))
        return
    events = rag.stream_answer_async(question, chunks)
    try:
        async for event in events:
            if event.type != "done":
                yield event
                continue
            data = _done(event.data, session, turn)
            # Saved before `done` is sent: a client that has seen `done` finds the turn in the history.
            # A failed or abandoned answer never gets here, so it never becomes context for the next turn.
            session.add_turn(message, str(data.get("answer", "")))
            yield StreamEvent("done", data)
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()  # a client disconnect closes us: close the LLM stream now, not at its end


def _sessions(request: Request) -> SessionStore:
    sessions: SessionStore = state(request, "sessions")
    return sessions


@router.post(
    "/chat/stream",
    summary="Stream an answer within a conversation (server-sent events)",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "sources, token*, citation*, done (with session_id) | error",
        }
    },
)
async def chat_stream(body: ChatRequest, request: Request) -> StreamingResponse:
    message = check_question(body.message, get_settings(request))  # 422 before the stream starts
    session = _sessions(request).get_or_create(body.session_id)
    return sse_response(_chat_events(get_rag(request), session, message, body.top_k))


@router.get("/sessions/{session_id}", summary="A session's history (404 once it has expired)")
async def get_session(session_id: str, request: Request) -> dict[str, Any]:
    session = _sessions(request).get(check_session_id(session_id))
    if session is None:
        raise ApiError(404, "not_found", f"no session {session_id!r} (never created, deleted or expired)")
    return session.to_dict()


@router.delete(
    "/sessions/{session_id}", status_code=204, summary="Forget a session, its history and its documents"
)
async def delete_session(session_id: str, request: Request) -> Response:
    if not await _sessions(request).delete(check_session_id(session_id)):
        raise ApiError(404, "not_found", f"no session {session_id!r}")
    return Response(status_code=204)


async def setup(app: FastAPI) -> None:
    sessions_module.install(app)


async def teardown(app: FastAPI) -> None:
    await sessions_module.uninstall(app)
