"""The agent loop against the simulated LLM (OpenAI, Anthropic and Bedrock wire formats), scripted tool calls."""

from __future__ import annotations

import asyncio
import enum
import json
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from pydantic import BaseModel

from mini import AgenticRAG, EmbeddingModel, VectorStore
from mini.agent.tools import function_tool
from mini.errors import BudgetExceededError, InvalidInputError
from mini.llms.base import create_llm
from mini.server import create_app
from mini.testing.server_thread import ServerThread
from tests.conftest import SAMPLE_CORPUS
from tests.llms.test_contract import KEY, PROVIDERS

FINAL = "Glass is collected on the first Wednesday of every month [1]. The budget is described in [2]."


@pytest.fixture(params=sorted(PROVIDERS))
async def rag(
    request: pytest.FixtureRequest, sim: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AgenticRAG:
    sim.configure(api_key=KEY)
    factory, _ = PROVIDERS[request.param]
    llm = create_llm(factory(sim, monkeypatch, KEY))
    embedder = EmbeddingModel("openai:sim-embed", base_url=sim.base_url, api_key=KEY, dimension=384)
    rag = AgenticRAG(VectorStore(str(tmp_path / "store"), collection_name="t"), embedder, llm=llm)
    assert (await rag.index_documents_async([SAMPLE_CORPUS])).ok
    sim.reset()
    return rag


def two_searches_then_a_tool_then_answer(sim: Any) -> None:
    sim.script(
        [
            {
                "tool_calls": [
                    {"name": "search_documents", "arguments": {"query": "glass collection day"}},
                    {"name": "search_documents", "arguments": {"query": "library budget 2025"}},
                ]
            },
            {"tool_calls": [{"name": "opening_hours", "arguments": {"place": "library"}}]},
            {"content": FINAL},
        ]
    )


async def opening_hours(place: str) -> str:
    """Opening hours of a town building."""
    await asyncio.sleep(0.01)
    return f"The {place} opens at 9."


async def test_two_searches_in_one_turn_run_concurrently_then_the_answer_cites_them(
    rag: AgenticRAG, sim: Any
) -> None:
    # Each search embeds its query for 400 ms: the two overlap unless the second started 400 ms after the
    # first, a margin that holds on a loaded machine (the assertion compares their recorded intervals).
    sim.configure(embed_ms=400)
    two_searches_then_a_tool_then_answer(sim)
    response = await rag.agent_query_async(
        "When is glass collected, and what is the budget?", tools=[opening_hours]
    )
    assert response.answer == FINAL
    trace = response.metadata["agent"]["tool_calls"]
    assert [(t["turn"], t["name"]) for t in trace] == [
        (1, "search_documents"),
        (1, "search_documents"),
        (2, "opening_hours"),
    ] or sorted((t["turn"], t["name"]) for t in trace) == [(1, "search_documents")] * 2 + [
        (2, "opening_hours")
    ]
    first, second = (t for t in trace if t["turn"] == 1)
    # Concurrent: each started before the other ended (serial runs would be ~400 ms apart).
    assert max(first["started_ms"], second["started_ms"]) < min(first["ended_ms"], second["ended_ms"])
    assert all(t["ok"] for t in trace)
    assert "opens at 9" in trace[-1]["output"]
    assert response.metadata["agent"]["turns"] == 3
    assert sorted(response.metadata["agent"]["searches"]) == ["glass collection day", "library budget 2025"]
    assert [c.number for c in response.citations] == [1, 2]
    assert {c.chunk_id for c in response.citations} <= {chunk.id for chunk in response.retrieved_chunks}
    assert response.metadata["usage"]["completion_tokens"] > 0


async def test_a_tool_that_raises_is_reported_to_the_model_and_the_run_goes_on(
    rag: AgenticRAG, sim: Any
) -> None:
    def broken(place: str) -> str:  # sync: runs in a worker thread
        raise ValueError(f"no hours known for {place}")

    sim.script(
        [
            {"tool_calls": [{"name": "broken", "arguments": {"place": "pool"}}]},
            {"tool_calls": [{"name": "nope", "arguments": {}}]},
            {"content": "I could not find the opening hours."},
        ]
    )
    response = await rag.agent_query_async("When does the pool open?", tools=[broken])
    assert response.answer == "I could not find the opening hours."
    errors = [t["output"] for t in response.metadata["agent"]["tool_calls"]]
    assert errors[0] == "Error: ValueError: no hours known for pool"
    assert errors[1].startswith("Error: InvalidInputError: there is no tool named 'nope'")


async def test_max_turns_raises_budget_exceeded_with_the_transcript(rag: AgenticRAG, sim: Any) -> None:
    sim.script(
        [{"tool_calls": [{"name": "search_documents", "arguments": {"query": f"q{i}"}}]} for i in range(2)]
    )
    with pytest.raises(BudgetExceededError) as caught:
        await rag.agent_query_async("Keep searching forever", max_turns=2)
    error = caught.value
    assert error.kind == "turns" and "max_turns=2" in str(error)
    roles = [m["role"] for m in error.transcript]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "tool"]
    assert error.transcript[2]["tool_calls"][0]["name"] == "search_documents"
    assert len(error.trace) == 2
    json.dumps(error.transcript)  # serialisable as is


async def test_events_stream_tool_calls_results_tokens_citations_done(rag: AgenticRAG, sim: Any) -> None:
    two_searches_then_a_tool_then_answer(sim)
    kinds = []
    done: dict[str, Any] = {}
    async for event in rag.agent_stream_async("Glass and budget?", tools=[opening_hours]):
        kinds.append(event.type)
        if event.type == "done":
            done = event.data
    assert kinds[:4] == ["tool_call", "tool_call", "tool_result", "tool_result"]
    assert kinds[4:6] == ["tool_call", "tool_result"]
    assert "token" in kinds and kinds[-1] == "done" and kinds.count("citation") == 2
    assert kinds.index("citation") > max(i for i, k in enumerate(kinds) if k == "token")
    assert done["answer"] == FINAL and len(done["citations"]) == 2


async def test_structured_output_is_parsed_with_one_repair(rag: AgenticRAG, sim: Any) -> None:
    class Answer(BaseModel):
        day: str
        citations: list[int]

    sim.script(
        [
            {"content": "The day is Wednesday [1]."},
            {"content": '```json\n{"day": "Wednesday", "citations": [1]}\n```'},
        ]
    )
    response = await rag.agent_query_async("Which day?", output_model=Answer)
    assert response.metadata["output"] == {"day": "Wednesday", "citations": [1]}


async def test_token_budget_stops_the_run(rag: AgenticRAG, sim: Any) -> None:
    sim.script([{"tool_calls": [{"name": "search_documents", "arguments": {"query": "glass"}}]}])
    with pytest.raises(BudgetExceededError) as caught:
        await rag.agent_query_async("Glass?", max_tokens=1)
    assert caught.value.kind == "tokens"


async def test_without_an_llm_the_standard_pipeline_answers_and_says_so(tmp_path: Path) -> None:
    rag = AgenticRAG(VectorStore(str(tmp_path / "store"), collection_name="t"), EmbeddingModel())
    assert (await rag.index_documents_async([SAMPLE_CORPUS])).ok
    response = await rag.agent_query_async("When is glass collected for recycling?")
    assert "fallback" in response.metadata["agent"] and response.citations
    events = [e async for e in rag.agent_stream_async("When is glass collected for recycling?")]
    assert events[-1].type == "done" and "fallback" in events[-1].data["metadata"]["agent"]


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


def test_function_signatures_become_json_schemas() -> None:
    def paint(
        wall: str,
        coats: int,
        color: Color,
        finish: Literal["matte", "gloss"] = "matte",
        rooms: list[str] | None = None,
        ratio: float = 0.5,
    ) -> str:
        """Paint a wall.

        More words the model does not need."""
        return "ok"

    tool = function_tool(paint)
    assert tool.spec.name == "paint" and tool.spec.description == "Paint a wall."
    props = tool.spec.parameters["properties"]
    assert props["wall"] == {"type": "string"} and props["coats"] == {"type": "integer"}
    assert props["color"] == {"enum": ["red", "blue"]}
    assert props["finish"] == {"enum": ["matte", "gloss"], "default": "matte"}
    assert props["rooms"] == {"type": "array", "items": {"type": "string"}}
    assert props["ratio"] == {"type": "number", "default": 0.5}
    assert tool.spec.parameters["required"] == ["wall", "coats", "color"]
    with pytest.raises(InvalidInputError):
        function_tool(lambda *args: None)


async def test_tool_arguments_are_checked_before_the_call() -> None:
    tool = function_tool(opening_hours)
    assert await tool.call({"place": "museum"}) == "The museum opens at 9."
    for bad in ({}, {"place": "x", "extra": 1}, {"_raw": "{not json"}):
        with pytest.raises(InvalidInputError):
            await tool.call(bad)


async def test_agent_stream_endpoint(rag: AgenticRAG, sim: Any) -> None:
    sim.script(
        [
            {"tool_calls": [{"name": "search_documents", "arguments": {"query": "glass"}}]},
            {"content": "Glass goes out on Wednesdays [1]."},
        ]
    )
    with ServerThread(create_app(rag)) as server:
        async with (
            httpx.AsyncClient(timeout=30) as client,
            client.stream("POST", f"{server.url}/v1/agent/stream", json={"question": "Glass?"}) as response,
        ):
            kinds = [line[7:] async for line in response.aiter_lines() if line.startswith("event: ")]
    assert kinds[:2] == ["tool_call", "tool_result"] and kinds[-2:] == ["citation", "done"]
