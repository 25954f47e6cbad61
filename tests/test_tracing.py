"""OpenTelemetry spans: the span tree of a query, a stream, an agent run and an ingestion; errors; the off switch;
silence without tracing configured; the Langfuse exporter never holding up a query."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import INVALID_SPAN

from mini import AgenticRAG, EmbeddingModel, RetrievalConfig, VectorStore, tracing
from mini.config import ObservabilityConfig
from mini.errors import AuthenticationError, ProviderConnectionError
from tests.conftest import REPO, SAMPLE_CORPUS
from tests.query.conftest import SIM_KEY, make_rag

QUESTION = "When is glass collected for recycling?"


@pytest.fixture(autouse=True)
def _no_langfuse(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "LANGFUSE_HOST", "LANGFUSE_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def exporter() -> Iterator[Any]:
    """An SDK provider with an in-memory exporter for mini's spans, for this test only (the global OTel
    provider can be set once per process, so mini is handed its own)."""
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracing.use_tracer_provider(provider)
    try:
        yield memory
    finally:
        tracing.use_tracer_provider(None)
        provider.shutdown()


class Tree:
    """Finished spans by parent, with the checks every trace must pass."""

    def __init__(self, spans: Sequence[Any]) -> None:
        self.spans = list(spans)
        ids = {s.context.span_id for s in self.spans}
        self.roots = [s for s in self.spans if s.parent is None or s.parent.span_id not in ids]
        self.by_parent: dict[int, list[Any]] = {}
        for s in self.spans:
            if s.parent is not None:
                self.by_parent.setdefault(s.parent.span_id, []).append(s)

    def root(self, name: str) -> Any:
        assert [r.name for r in self.roots] == [name], [r.name for r in self.roots]
        return self.roots[0]

    def children(self, span: Any, name: str | None = None) -> list[Any]:
        found = sorted(self.by_parent.get(span.context.span_id, []), key=lambda s: s.start_time)
        return [s for s in found if name is None or s.name == name]

    def names(self, span: Any) -> list[str]:
        return sorted(s.name for s in self.children(span))

    def one(self, name: str) -> Any:
        found = [s for s in self.spans if s.name == name]
        assert len(found) == 1, [s.name for s in self.spans]
        return found[0]

    def check_timing(self) -> None:
        """One trace; every span took time and lies within its parent."""
        assert len({s.context.trace_id for s in self.spans}) == 1
        by_id = {s.context.span_id: s for s in self.spans}
        for s in self.spans:
            assert s.end_time > s.start_time, s.name
            parent = by_id.get(s.parent.span_id) if s.parent is not None else None
            if parent is not None:
                assert parent.start_time <= s.start_time and s.end_time <= parent.end_time, s.name


@pytest.fixture(scope="module")
def corpus_rag(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgenticRAG]:
    rag = AgenticRAG(
        VectorStore(str(tmp_path_factory.mktemp("traced")), collection_name="c"), EmbeddingModel()
    )
    assert rag.index_documents([SAMPLE_CORPUS]).ok
    yield rag
    rag.close()


def check_query_tree(tree: Tree) -> Any:
    root = tree.root("mini.query")
    tree.check_timing()
    assert tree.names(root) == ["mini.generate", "mini.rerank", "mini.retrieve", "mini.rewrite"]
    (retrieve,) = tree.children(root, "mini.retrieve")
    # The legs run in concurrent tasks: still children of the retrieval span, not siblings of the root.
    assert tree.names(retrieve) == ["mini.embed", "mini.search", "mini.search.keyword"]
    legs = {s.name: s.attributes["mini.leg"] for s in tree.children(retrieve)}
    assert legs == {"mini.embed": "dense", "mini.search": "dense", "mini.search.keyword": "keyword"}
    assert root.attributes["mini.question_chars"] > 0 and root.attributes["mini.hits"] > 0
    assert retrieve.attributes["mini.hits"] > 0 and retrieve.attributes["mini.retrieval_mode"] == "hybrid"
    return root


async def test_a_query_produces_the_span_tree_with_durations(corpus_rag: AgenticRAG, exporter: Any) -> None:
    response = await corpus_rag.query_async(QUESTION)
    tree = Tree(exporter.get_finished_spans())
    root = check_query_tree(tree)
    assert root.attributes["mini.hits"] == len(response.retrieved_chunks)
    assert tree.one("mini.rewrite").attributes["mini.rewrite"] == "skipped: no LLM configured"
    generate = tree.one("mini.generate")
    assert generate.attributes["mini.answer_type"] == "extractive"
    assert "gen_ai.request.model" not in generate.attributes  # no model wrote it
    embed = tree.one("mini.embed")
    assert embed.attributes["gen_ai.request.model"] == "all-MiniLM-L6-v2-int8"
    assert {s.status.status_code.name for s in tree.spans} == {"UNSET"}


async def test_a_stream_produces_the_same_tree(corpus_rag: AgenticRAG, exporter: Any) -> None:
    events = [e async for e in corpus_rag.stream_async(QUESTION)]
    assert events[-1].type == "done"
    check_query_tree(Tree(exporter.get_finished_spans()))


def test_a_sync_stream_stepped_from_other_tasks_keeps_its_tree(
    corpus_rag: AgenticRAG, exporter: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # The portal runs every step of the generator as its own task: spans must not be attached across yields.
    with caplog.at_level(logging.WARNING):
        events = list(corpus_rag.stream(QUESTION))
    assert events[-1].type == "done"
    check_query_tree(Tree(exporter.get_finished_spans()))
    assert not [r for r in caplog.records if r.name.startswith("opentelemetry")], caplog.text


async def test_the_prefilter_leg_is_a_child_of_the_retrieval(corpus_rag: AgenticRAG, exporter: Any) -> None:
    rag = AgenticRAG(
        corpus_rag.vector_store,
        corpus_rag.embedding_model,
        retrieval_config=RetrievalConfig(prefilter_field="title"),
    )
    await rag.retrieve_async(["glass recycling"])
    tree = Tree(exporter.get_finished_spans())
    retrieve = tree.root("mini.retrieve")
    assert tree.names(retrieve) == [
        "mini.embed",
        "mini.search",
        "mini.search.keyword",
        "mini.search.prefilter",
    ]
    prefilter = tree.one("mini.search.prefilter")
    assert prefilter.attributes["mini.leg"] == "prefilter" and prefilter.attributes["mini.phrases"] > 0


async def test_concurrent_queries_keep_their_own_trees(corpus_rag: AgenticRAG, exporter: Any) -> None:
    await asyncio.gather(*(corpus_rag.query_async(QUESTION) for _ in range(3)))
    spans = exporter.get_finished_spans()
    traces: dict[int, list[Any]] = {}
    for s in spans:
        traces.setdefault(s.context.trace_id, []).append(s)
    assert len(traces) == 3
    for trace_spans in traces.values():
        check_query_tree(Tree(trace_spans))


async def test_llm_spans_carry_the_model_and_token_usage(sim: Any, tmp_path: Path, exporter: Any) -> None:
    rag = make_rag(sim, tmp_path)
    assert (await rag.index_documents_async([SAMPLE_CORPUS])).ok
    exporter.clear()
    response = await rag.query_async(QUESTION)
    await rag.aclose()
    tree = Tree(exporter.get_finished_spans())
    check_query_tree(tree)
    rewrite, generate = tree.one("mini.rewrite"), tree.one("mini.generate")
    assert rewrite.attributes["mini.rewrite"] == "ok"
    assert tree.one("mini.retrieve").attributes["mini.queries"] == len(response.rewritten_queries) > 1
    for span in (rewrite, generate):
        assert span.attributes["gen_ai.request.model"] == "sim-chat"
        assert span.attributes["gen_ai.provider.name"] == "openai"
        assert span.attributes["gen_ai.usage.input_tokens"] > 0
        assert span.attributes["gen_ai.usage.output_tokens"] > 0
    usage = response.metadata["usage"]
    assert usage["prompt_tokens"] == sum(
        s.attributes["gen_ai.usage.input_tokens"] for s in (rewrite, generate)
    )
    assert generate.attributes["mini.answer_type"] == "llm"


async def test_a_streamed_answer_carries_its_own_token_usage(sim: Any, tmp_path: Path, exporter: Any) -> None:
    rag = make_rag(sim, tmp_path)
    assert (await rag.index_documents_async([SAMPLE_CORPUS])).ok
    exporter.clear()
    events = [e async for e in rag.stream_async(QUESTION)]
    await rag.aclose()
    tree = Tree(exporter.get_finished_spans())
    check_query_tree(tree)
    rewrite, generate = tree.one("mini.rewrite"), tree.one("mini.generate")
    usage = events[-1].data["metadata"]["usage"]
    assert generate.attributes["gen_ai.usage.output_tokens"] > 0
    assert usage["completion_tokens"] == (
        rewrite.attributes["gen_ai.usage.output_tokens"] + generate.attributes["gen_ai.usage.output_tokens"]
    )


async def opening_hours(place: str) -> str:
    """Opening hours of a town building."""
    await asyncio.sleep(0.01)
    return f"The {place} opens at 9."


def broken(place: str) -> str:
    """Always fails."""
    raise ValueError(f"no hours known for {place}")


async def test_agent_tool_calls_are_spans_under_their_turn(sim: Any, tmp_path: Path, exporter: Any) -> None:
    rag = make_rag(sim, tmp_path)
    assert (await rag.index_documents_async([SAMPLE_CORPUS])).ok
    exporter.clear()
    sim.script(
        [
            {
                "tool_calls": [
                    {"name": "search_documents", "arguments": {"query": "glass collection day"}},
                    {"name": "opening_hours", "arguments": {"place": "library"}},
                    {"name": "broken", "arguments": {"place": "pool"}},
                ]
            },
            {"content": "Glass goes out on the first Wednesday [1]."},
        ]
    )
    response = await rag.agent_query_async(QUESTION, tools=[opening_hours, broken])
    await rag.aclose()
    assert response.metadata["agent"]["turns"] == 2
    tree = Tree(exporter.get_finished_spans())
    root = tree.root("mini.agent")
    tree.check_timing()
    assert root.attributes["mini.turns"] == 2
    first, second = tree.children(root, "mini.agent.turn")
    assert tree.names(root) == ["mini.agent.turn", "mini.agent.turn"]
    assert (first.attributes["mini.turn"], second.attributes["mini.turn"]) == (1, 2)
    assert first.attributes["mini.tool_calls"] == 3 and second.attributes["mini.tool_calls"] == 0
    assert first.attributes["gen_ai.usage.output_tokens"] > 0
    tools = {s.attributes["mini.tool"]: s for s in tree.children(first)}
    assert set(tools) == {"search_documents", "opening_hours", "broken"}
    assert all(s.name == "mini.tool" for s in tools.values())
    assert tools["opening_hours"].attributes["mini.tool.ok"] is True
    failed = tools["broken"]
    assert failed.attributes["mini.tool.ok"] is False
    assert failed.status.status_code.name == "ERROR" and "no hours known" in failed.status.description
    assert [e.name for e in failed.events] == ["exception"]
    # The built-in search is the pipeline's stages under its tool span (no rewrite: the agent wrote the
    # query), its retrieval with legs and all.
    rewrite, retrieve, rerank = tree.children(tools["search_documents"])
    assert (rewrite.name, retrieve.name, rerank.name) == ("mini.rewrite", "mini.retrieve", "mini.rerank")
    assert rewrite.attributes["mini.rewrite"] == "disabled"
    assert tree.names(retrieve) == ["mini.embed", "mini.search", "mini.search.keyword"]
    assert tree.children(second) == []


async def test_ingestion_batches_are_children_of_the_run(sim: Any, tmp_path: Path, exporter: Any) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(5):
        (docs / f"note{i}.txt").write_text(f"Note {i}: the depot on street {i} opens at {i + 7} o'clock.\n")
    embedder = EmbeddingModel("openai:sim-embed", base_url=sim.base_url, api_key=SIM_KEY, dimension=384)
    rag = AgenticRAG(VectorStore(str(tmp_path / "store"), collection_name="c"), embedder)
    report = await rag.index_documents_async([docs], batch_size=2)
    await rag.aclose()
    assert report.ok and report.files_added == 5
    tree = Tree(exporter.get_finished_spans())
    root = tree.root("mini.ingest")
    tree.check_timing()
    batches = tree.children(root, "mini.ingest.embed_batch")
    writes = tree.children(root, "mini.ingest.write")
    assert len(batches) == report.embedding_requests >= 3
    assert sum(b.attributes["mini.batch_size"] for b in batches) == report.chunks_embedded == 5
    assert all(b.attributes["mini.batch_size"] <= 2 for b in batches)
    assert writes and sum(w.attributes["mini.rows"] for w in writes) == 5
    assert set(tree.names(root)) == {"mini.ingest.embed_batch", "mini.ingest.write"}
    assert root.attributes["mini.files_added"] == 5


async def test_a_failing_query_records_the_exception_and_error_status(
    sim: Any, tmp_path: Path, exporter: Any
) -> None:
    rag = make_rag(sim, tmp_path)
    assert (await rag.index_documents_async([SAMPLE_CORPUS])).ok
    sim.configure(api_key="another-key")  # every call is now unauthorised: not retried, not degraded
    exporter.clear()
    with pytest.raises(AuthenticationError):
        await rag.query_async(QUESTION)
    tree = Tree(exporter.get_finished_spans())
    root, rewrite = tree.root("mini.query"), tree.one("mini.rewrite")
    for span in (root, rewrite):
        assert span.status.status_code.name == "ERROR"
        assert span.status.description.startswith("AuthenticationError")
        (event,) = span.events
        assert event.name == "exception"
        assert event.attributes["exception.type"].endswith("AuthenticationError")
    assert tree.names(root) == ["mini.rewrite"]

    exporter.clear()
    events = [e async for e in rag.stream_async(QUESTION)]
    await rag.aclose()
    assert events[-1].type == "error"
    root = Tree(exporter.get_finished_spans()).root("mini.query")
    assert root.status.status_code.name == "ERROR"


class RewriteFails:
    """The simulator's LLM, except that its first call (the rewrite) cannot connect."""

    def __init__(self, llm: Any) -> None:
        self.llm, self.name, self.calls = llm, llm.name, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.llm, name)

    async def complete(self, messages: Any, **options: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            raise ProviderConnectionError("connection reset (test)", provider="openai")
        return await self.llm.complete(messages, **options)


async def test_a_degraded_stage_is_marked_failed_while_the_query_succeeds(
    sim: Any, tmp_path: Path, exporter: Any
) -> None:
    sim_rag = make_rag(sim, tmp_path)
    rag = AgenticRAG(sim_rag.vector_store, sim_rag.embedding_model, llm=RewriteFails(sim_rag.llm))
    assert (await rag.index_documents_async([SAMPLE_CORPUS])).ok
    exporter.clear()
    response = await rag.query_async(QUESTION)
    await rag.aclose()
    assert response.metadata["rewrite"] == "failed"
    tree = Tree(exporter.get_finished_spans())
    rewrite = tree.one("mini.rewrite")
    assert rewrite.attributes["mini.rewrite"] == "failed"
    assert rewrite.status.status_code.name == "ERROR"
    assert [e.name for e in rewrite.events] == ["exception"]
    # The question was still answered, from the original question only.
    assert tree.one("mini.retrieve").attributes["mini.queries"] == 1
    assert tree.root("mini.query").status.status_code.name == "UNSET"
    assert tree.one("mini.generate").attributes["gen_ai.usage.output_tokens"] > 0


async def test_tracing_disabled_emits_no_spans(corpus_rag: AgenticRAG, exporter: Any, tmp_path: Path) -> None:
    quiet = AgenticRAG(
        corpus_rag.vector_store,
        corpus_rag.embedding_model,
        observability_config=ObservabilityConfig(enabled=False),
    )
    await quiet.query_async(QUESTION)
    _ = [e async for e in quiet.stream_async(QUESTION)]
    await quiet.retrieve_async([QUESTION])
    await quiet.rerank_async(QUESTION, [])
    other = AgenticRAG(
        VectorStore(str(tmp_path / "s"), collection_name="c"),
        corpus_rag.embedding_model,
        observability_config=ObservabilityConfig(enabled=False),
    )
    assert (await other.index_texts_async(["The depot opens at nine."])).ok
    await other.aclose()
    assert exporter.get_finished_spans() == ()
    # The switch belongs to that RAG only: it leaks into nothing else.
    await corpus_rag.query_async(QUESTION)
    check_query_tree(Tree(exporter.get_finished_spans()))


def test_spans_are_no_ops_without_an_sdk() -> None:
    with tracing.span("mini.anything", {"mini.top_k": 3}) as span:
        assert span is INVALID_SPAN
        assert not span.is_recording()
    with tracing.span("mini.root", enabled=False) as root, tracing.span("mini.child") as child:
        assert root is tracing.DISABLED and child is tracing.DISABLED


def test_configure_langfuse_without_keys_does_nothing() -> None:
    assert tracing.configure_langfuse() is None
    assert tracing.configure_langfuse(public_key="pk-lf-1") is None


# -- in a fresh interpreter: nothing printed without tracing; Langfuse never holds up a query ------------------

SCRIPT = """
import json, sys, time
from mini import AgenticRAG, EmbeddingModel, RetrievalConfig, VectorStore, tracing
from opentelemetry import trace

rag = AgenticRAG(VectorStore(sys.argv[1], collection_name="c"), EmbeddingModel())
assert rag.index_texts(["Glass is collected on the first Wednesday of every month."]).ok
started = time.perf_counter()
response = rag.query("When is glass collected?")
query_s = time.perf_counter() - started
assert "Wednesday" in response.answer, response.answer
provider = trace.get_tracer_provider()
out = {"query_s": query_s, "provider": type(provider).__module__ + "." + type(provider).__name__,
       "sdk_imported": "opentelemetry.sdk" in sys.modules}
if out["sdk_imported"]:
    assert tracing.configure_langfuse() is provider  # configured once, on the first span
    started = time.perf_counter()
    provider.shutdown()
    out["shutdown_s"] = time.perf_counter() - started
rag.close()
print(json.dumps(out))
"""


def run_script(tmp_path: Path, **env: str) -> tuple[dict[str, Any], str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LANGFUSE_", "OTEL_"))}
    clean["PYTHONPATH"] = str(REPO / "src")
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(SCRIPT), str(tmp_path / "store")],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_running_without_tracing_configured_prints_nothing(tmp_path: Path) -> None:
    out, stderr = run_script(tmp_path)
    assert stderr == ""
    assert out["provider"] == "opentelemetry.trace.ProxyTracerProvider"
    assert out["sdk_imported"] is False  # nothing heavy imported, nothing sent


@pytest.mark.slow
def test_langfuse_keys_export_in_the_background_without_holding_up_a_query(tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    out, _stderr = run_script(
        tmp_path,
        LANGFUSE_PUBLIC_KEY="pk-lf-test",
        LANGFUSE_SECRET_KEY="sk-lf-test",
        LANGFUSE_HOST=f"http://127.0.0.1:{closed_port()}",
    )
    assert out["provider"] == "opentelemetry.sdk.trace.TracerProvider"
    # Exports run in the processor's thread: the query is as fast as without tracing (offline ~0.3 s).
    assert out["query_s"] < 5
    # The unreachable endpoint costs at most the export timeout (5 s) at shutdown, never more.
    assert out["shutdown_s"] < 8
