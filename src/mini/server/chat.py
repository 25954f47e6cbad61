"""Conversational answers: `POST /v1/chat/stream` (SSE) and the session routes.

    POST   /v1/chat/stream          {session_id?, message, top_k?, filter?, mode?}
                                    -> sources, token*, citation*, done (with session_id) | error
    GET    /v1/sessions/{id}        the session's history
    DELETE /v1/sessions/{id}        forget it (and drop its documents)

A turn is `mini.conversation.chat_events` over the session's history: condense the message into a standalone
question, then the one query pipeline (rewrite, retrieve, rerank, stream), with the session's uploaded
documents as an extra store its retrieval legs search (one fusion). Other sessions' documents are never
candidates, and /v1/query never sees any session's. Only a completed answer becomes part of the history.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from pydantic import Field
from starlette.responses import StreamingResponse

from mini._tasks import to_the_end
from mini.conversation import chat_events
from mini.query.pipeline import Options
from mini.server import sessions as sessions_module
from mini.server.deps import check_question, get_rag, get_settings, require_api_key, state
from mini.server.errors import ApiError
from mini.server.schemas import ERRORS, AnswerOptions
from mini.server.sessions import SESSION_ID_PATTERN, Session, SessionStore, check_session_id
from mini.server.sse import sse_response
from mini.types import StreamEvent

if TYPE_CHECKING:
    from mini.rag import AgenticRAG

log = logging.getLogger("mini.server")

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)], responses=ERRORS, tags=["chat"])


class ChatRequest(AnswerOptions):
    session_id: str | None = Field(
        default=None,
        pattern=SESSION_ID_PATTERN,
        description="1-128 characters of A-Z a-z 0-9 _ -; a new session (with a generated id) if absent.",
    )
    message: str = Field(description="The user's message; 1 to MINI_MAX_QUESTION_CHARS characters.")


async def _chat_events(
    rag: AgenticRAG, sessions: SessionStore, session: Session, message: str, options: Options
) -> AsyncIterator[StreamEvent]:
    async for event in chat_events(rag.pipeline, list(session.turns), message, options):
        if event.type == "done":
            # Recorded before `done` goes out: a client that has seen it finds the turn (on any replica).
            await sessions.add_turn(session, message, str(event.data.get("answer", "")))
            event.data["session_id"] = session.id
            event.data["metadata"]["session_documents"] = bool(options.extra_stores)
        yield event


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
    # Options are checked first, so a bad filter is a 422 before the stream starts or a session is made.
    options = Options(**body.answer_options())
    sessions = _sessions(request)
    session = await sessions.open(body.session_id)
    own = session.store  # read once: the session may end while we search
    if own is not None:
        options = replace(options, extra_stores=(own,))
    return sse_response(_chat_events(get_rag(request), sessions, session, message, options))


@router.get("/sessions/{session_id}", summary="A session's history (404 once it has expired)")
async def get_session(session_id: str, request: Request) -> dict[str, Any]:
    session = await _sessions(request).find(check_session_id(session_id))
    if session is None:
        raise ApiError(404, "not_found", f"no session {session_id!r} (never created, deleted or expired)")
    return session.to_dict()


@router.delete(
    "/sessions/{session_id}", status_code=204, summary="Forget a session, its history and its documents"
)
async def delete_session(session_id: str, request: Request) -> Response:
    # Finished even if the client leaves: half a session (its collection left behind) helps nobody.
    if not await to_the_end(_sessions(request).delete(check_session_id(session_id))):
        raise ApiError(404, "not_found", f"no session {session_id!r}")
    return Response(status_code=204)


async def setup(app: FastAPI) -> None:
    sessions_module.install(app)


async def teardown(app: FastAPI) -> None:
    await sessions_module.uninstall(app)
