"""`POST /v1/agent/stream`: the agent loop over SSE (`tool_call`, `tool_result`, `token`, `citation`, `done`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import Field
from starlette.responses import StreamingResponse

from mini.server.deps import check_question, get_rag, get_settings, require_api_key
from mini.server.schemas import RequestBody
from mini.server.sse import sse_response

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])


class AgentRequest(RequestBody):
    question: str
    max_turns: int = Field(default=4, ge=1, le=10)
    max_tokens: int | None = Field(default=None, ge=1)


@router.post(
    "/agent/stream",
    summary="Answer with the agent loop (searches and tool calls), as server-sent events",
    response_class=StreamingResponse,
)
async def agent_stream(body: AgentRequest, request: Request) -> StreamingResponse:
    question = check_question(body.question, get_settings(request))
    events = get_rag(request).agent_stream_async(
        question, max_turns=body.max_turns, max_tokens=body.max_tokens
    )
    return sse_response(events)
