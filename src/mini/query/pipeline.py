"""`AgenticRAG`: rewrite -> retrieve (embed + concurrent searches) -> rerank -> generate, async with sync twins.

Over 500 lines on purpose, for one issue more: it still holds both the facade (construction, ingestion,
agent delegation) and the pipeline. The next issue ("One pipeline and one configuration") splits it into
`mini/rag.py` (the facade) and a `QueryPipeline` here, together with the server chat's retriever; splitting
it now would only be moved again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mini import _portal, tracing
from mini._limits import is_retryable
from mini.config import LLMConfig, ObservabilityConfig, RerankerConfig, RetrievalConfig
from mini.embeddings.base import EmbeddingModel
from mini.errors import EmptyQuestionError, InvalidInputError, ProviderError, error_payload, log_failure
from mini.ingest.cache import EmbeddingCache
from mini.llms.base import LLM, Usage, create_llm, resolve_llm_config
from mini.llms.extractive import NO_CONTEXT_ANSWER, ExtractiveGenerator
from mini.query import prompts
from mini.query.batch import DEFAULT_CONCURRENCY as DEFAULT_BATCH_CONCURRENCY
from mini.query.batch import BatchResult, check_batch, iter_batch
from mini.query.citations import CitationStream, build_citations
from mini.query.retrieval import HybridRetriever
from mini.rerankers.base import Reranker
from mini.rerankers.factory import create_reranker
from mini.stores.base import VectorStore
from mini.types import Document, RAGResponse, RetrievalResult, StreamEvent

if TYPE_CHECKING:
    from mini.ingest.pipeline import Ingestor, IngestReport, ProgressCallback

log = logging.getLogger("mini.query")

STAGES = ("rewrite", "embed", "search", "rerank", "generate")


def check_question(question: Any) -> str:
    """Reject empty questions before any I/O."""
    if not isinstance(question, str):
        raise InvalidInputError(f"the question must be a string, not {type(question).__name__}")
    if not question.strip():
        raise EmptyQuestionError("the question is empty")
    return question.strip()


@dataclass
class _Run:
    """What one question accumulates on its way through the pipeline."""

    question: str
    started: float = field(default_factory=time.perf_counter)
    timings: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    chunks: list[RetrievalResult] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)

    def add_time(self, stage: str, since: float) -> None:
        self.timings[stage] += (time.perf_counter() - since) * 1000.0

    def finish_metadata(self) -> dict[str, Any]:
        timings = {k: round(v, 3) for k, v in self.timings.items()}
        timings["total"] = round((time.perf_counter() - self.started) * 1000.0, 3)
        meta = {**self.metadata, "timings_ms": timings, "usage": self.usage.as_dict()}
        if self.warnings:
            meta["warnings"] = list(self.warnings)
        return meta


class AgenticRAG:
    """Retrieval-augmented answers over a vector store. Every method has an `_async` original and a sync twin.

    Without an LLM (no `llm_config`, no OPENAI_API_KEY/MINI_LLM) answers are extractive: the retrieved
    sentences that best match the question, with `[n]` citations, and query rewriting is skipped.
    Construction does no I/O.
    """

    def __init__(
        self,
        vector_store: VectorStore | None = None,
        embedding_model: EmbeddingModel | None = None,
        *,
        llm_config: LLMConfig | None = None,
        retrieval_config: RetrievalConfig | None = None,
        reranker_config: RerankerConfig | None = None,
        observability_config: ObservabilityConfig | None = None,
        llm: LLM | None = None,
        reranker: Reranker | None = None,
    ) -> None:
        self.vector_store = vector_store if vector_store is not None else VectorStore()
        self.embedding_model = embedding_model if embedding_model is not None else EmbeddingModel()
        self.retrieval_config = retrieval_config or RetrievalConfig()
        self.reranker_config = reranker_config or RerankerConfig()
        self.observability_config = observability_config or ObservabilityConfig()
        if llm is None:
            resolved = resolve_llm_config(llm_config)
            llm = create_llm(resolved) if resolved is not None else None
        self.llm = llm
        self.reranker = reranker or create_reranker(self.reranker_config, self.llm)
        self.extractive = ExtractiveGenerator()
        # Vectors by (model, content hash), shared by every ingestion run of this object.
        self._embedding_cache = EmbeddingCache()

    def __repr__(self) -> str:
        return f"AgenticRAG(store={self.vector_store!r}, embeddings={self.embedding_model!r}, llm={self.llm_name!r})"

    @property
    def llm_name(self) -> str:
        return self.llm.name if self.llm is not None else self.extractive.name

    # -- stages ---------------------------------------------------------------------------------------------

    async def rewrite_query_async(self, query: str) -> list[str]:
        """The queries to search: the original first, then up to `num_query_variants` LLM rewrites.

        Without an LLM, or with rewriting disabled, just the original.
        """
        queries, _usage = await self._rewrite(check_question(query))
        return queries

    async def _rewrite(self, query: str) -> tuple[list[str], Usage]:
        n = self.retrieval_config.num_query_variants
        if self.llm is None or not self.retrieval_config.use_query_rewriting or n == 0:
            return [query], Usage()
        completion = await self.llm.complete(prompts.rewrite_messages(query, n=n), temperature=0.0)
        return [query, *prompts.parse_rewrites(completion.text, original=query, n=n)], completion.usage

    async def retrieve_async(
        self,
        queries: Sequence[str] | str,
        *,
        top_k: int | None = None,
        filter: Mapping[str, Any] | None = None,
    ) -> list[RetrievalResult]:
        """Search for every query with every leg of the configured mode (dense, keyword, both) at once and fuse
        the rankings by weighted reciprocal rank (RRF), deduplicated by chunk id.

        All queries are embedded in one batched call and searched in one multi-vector store call (the
        embedded store shares one scan among them, and among other questions searching at the same time);
        the keyword searches run meanwhile. See `RetrievalConfig` for the legs and their weights.
        """
        return await self._retrieve(_Run(""), queries, top_k=top_k, filter=filter)

    async def _retrieve(
        self, run: _Run, queries: Sequence[str] | str, *, top_k: int | None, filter: Mapping[str, Any] | None
    ) -> list[RetrievalResult]:
        if isinstance(queries, str):
            queries = [queries]
        queries = [check_question(q) for q in queries]
        if not queries:
            raise InvalidInputError("retrieve needs at least one query")
        retriever = HybridRetriever(self.vector_store, self.embedding_model, self.retrieval_config)
        top_k = top_k or self.retrieval_config.top_k
        with tracing.span(
            "mini.retrieve",
            {"mini.queries": len(queries), "mini.top_k": top_k},
            enabled=self.observability_config.enabled,
        ) as span:
            retrieval = await retriever.retrieve(
                queries, question=run.question or queries[0], top_k=top_k, filter=filter
            )
            span.set_attribute("mini.retrieval_mode", retrieval.mode)
            span.set_attribute("mini.hits", len(retrieval.results))
        # Stages add up to the wall time: the keyword and prefilter legs overlap the embedding and dense search.
        run.timings["embed"] += retrieval.embed_ms
        run.timings["search"] += max(0.0, retrieval.wall_ms - retrieval.embed_ms)
        run.metadata["retrieval"] = retrieval.metadata()
        run.warnings.extend(retrieval.warnings)
        return retrieval.results

    async def rerank_async(
        self, query: str, chunks: Sequence[RetrievalResult], *, top_k: int | None = None
    ) -> list[RetrievalResult]:
        """Reorder candidates, best first, keeping `top_k` (default `rerank_top_k`)."""
        k = top_k or self.retrieval_config.rerank_top_k
        reranker = self.reranker.name if self.retrieval_config.use_reranking else "disabled"
        with tracing.span(
            "mini.rerank",
            {"mini.candidates": len(chunks), "mini.top_k": k, "mini.reranker": reranker},
            enabled=self.observability_config.enabled,
        ) as span:
            if not self.retrieval_config.use_reranking:
                return list(chunks[:k])
            ranked = await self.reranker.rerank(query, chunks, top_k=k)
            span.set_attribute("mini.hits", len(ranked))
            return ranked

    async def generate_answer_async(self, query: str, chunks: Sequence[RetrievalResult]) -> str:
        """An answer to `query` from `chunks` with `[n]` citations (n = position in `chunks`, 1-based)."""
        answer, _usage = await self._generate(check_question(query), list(chunks))
        return answer

    async def _generate(self, question: str, chunks: list[RetrievalResult]) -> tuple[str, Usage]:
        if not chunks:
            return NO_CONTEXT_ANSWER, Usage()
        if self.llm is None:
            return await self.extractive.answer(question, chunks, self.embedding_model), Usage()
        messages = prompts.answer_messages(question, prompts.format_context(chunks))
        completion = await self.llm.complete(messages)
        return completion.text, completion.usage

    # -- the whole pipeline ------------------------------------------------------------------------------------

    async def _prepare(self, run: _Run, *, top_k: int | None, filter: Mapping[str, Any] | None) -> None:
        """Rewrite, retrieve and rerank; fills `run.queries` and `run.chunks`."""
        since = time.perf_counter()
        with tracing.span("mini.rewrite") as span:
            if self.llm is None:
                run.metadata["rewrite"] = "skipped: no LLM configured"
                run.queries = [run.question]
            elif not self.retrieval_config.use_query_rewriting:
                run.metadata["rewrite"] = "disabled"
                run.queries = [run.question]
            else:
                try:
                    run.queries, usage = await self._rewrite(run.question)
                    run.usage = run.usage + usage  # rewriting's tokens count toward the question's usage
                    run.metadata["rewrite"] = "ok"
                    tracing.set_model_call(span, self.llm.name, usage)
                except ProviderError as exc:
                    # Rewriting only widens recall: when the provider is struggling (it already retried),
                    # answering from the original question is still correct. Configuration errors (auth, bad
                    # request) surface.
                    if not is_retryable(exc):
                        raise
                    tracing.record_error(span, exc)
                    run.queries = [run.question]
                    run.metadata["rewrite"] = "failed"
                    run.warnings.append(f"query rewriting failed, searched the original question only: {exc}")
            span.set_attribute("mini.rewrite", run.metadata["rewrite"])
            span.set_attribute("mini.queries", len(run.queries))
        run.add_time("rewrite", since)
        candidates = await self._retrieve(run, run.queries, top_k=top_k, filter=filter)
        since = time.perf_counter()
        try:
            run.chunks = await self.rerank_async(run.question, candidates)
        except ProviderError as exc:
            # Like rewriting, reranking only improves order: a struggling provider (already retried) leaves
            # the fused retrieval order. Configuration errors (auth, bad request) surface.
            if not is_retryable(exc):
                raise
            run.chunks = candidates[: self.retrieval_config.rerank_top_k]
            run.metadata["rerank"] = "failed"
            run.warnings.append(f"reranking failed, kept the retrieval order: {exc}")
        run.add_time("rerank", since)
        run.metadata.update(
            llm=self.llm_name,
            embedding_model=self.embedding_model.name,
            reranker=self.reranker.name if self.retrieval_config.use_reranking else "disabled",
            num_candidates=len(candidates),
        )

    def _answer_type(self, run: _Run) -> str:
        if not run.chunks:
            return "no_context"
        return "llm" if self.llm is not None else "extractive"

    @property
    def _tracing(self) -> bool:
        return self.observability_config.enabled

    def _trace_attributes(self, run: _Run, top_k: int | None) -> dict[str, int]:
        return {"mini.question_chars": len(run.question), "mini.top_k": top_k or self.retrieval_config.top_k}

    def _trace_generation(self, span: tracing.Span, run: _Run, usage: Usage) -> None:
        """The answer's span: how it was made, and the model's name and tokens when an LLM wrote it."""
        span.set_attribute("mini.answer_type", self._answer_type(run))
        if self.llm is not None and run.chunks:
            tracing.set_model_call(span, self.llm.name, usage)

    async def query_async(
        self, question: str, *, top_k: int | None = None, filter: Mapping[str, Any] | None = None
    ) -> RAGResponse:
        """Answer a question from the indexed documents, with citations and per-stage timings."""
        run = _Run(check_question(question))
        with tracing.span("mini.query", self._trace_attributes(run, top_k), enabled=self._tracing) as root:
            await self._prepare(run, top_k=top_k, filter=filter)
            since = time.perf_counter()
            with tracing.span("mini.generate", {"mini.chunks": len(run.chunks)}) as span:
                answer, usage = await self._generate(run.question, run.chunks)
                self._trace_generation(span, run, usage)
            run.usage = run.usage + usage
            run.add_time("generate", since)
            run.metadata["answer_type"] = self._answer_type(run)
            root.set_attribute("mini.hits", len(run.chunks))
        return RAGResponse(
            answer=answer,
            original_query=run.question,
            rewritten_queries=run.queries,
            retrieved_chunks=run.chunks,
            context_used=prompts.format_context(run.chunks),
            metadata=run.finish_metadata(),
            citations=build_citations(answer, run.chunks),
        )

    async def query_batch_async(
        self,
        questions: Sequence[str],
        *,
        concurrency: int = DEFAULT_BATCH_CONCURRENCY,
        top_k: int | None = None,
        filter: Mapping[str, Any] | None = None,
    ) -> list[BatchResult]:
        """Answer many questions, each its own pipeline, at most `concurrency` at once; one `BatchResult` per
        question in input order, with `.response` or `.error` (a failing question never stops the others)."""
        finished = self.iter_query_batch_async(questions, concurrency=concurrency, top_k=top_k, filter=filter)
        results: list[BatchResult | None] = [None] * len(questions)  # checked by the call above
        async for result in finished:
            results[result.index] = result
        return [r for r in results if r is not None]

    def iter_query_batch_async(
        self,
        questions: Sequence[str],
        *,
        concurrency: int = DEFAULT_BATCH_CONCURRENCY,
        top_k: int | None = None,
        filter: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[BatchResult]:
        """`query_batch_async`'s results as each question finishes (completion order; `.index` says which).
        Closing the iterator early cancels the questions still running."""
        checked = check_batch(
            questions, concurrency
        )  # now: iter_batch, a generator, would check on first use

        async def answer(question: str) -> RAGResponse:
            return await self.query_async(question, top_k=top_k, filter=filter)

        return iter_batch(answer, checked, concurrency=concurrency)

    def stream_async(
        self, question: str, *, top_k: int | None = None, filter: Mapping[str, Any] | None = None
    ) -> AsyncIterator[StreamEvent]:
        """Events `sources` -> `token`* (with `citation` as each `[n]` completes) -> `done`; on failure `error`.

        The question is checked now (an empty one raises before anything streams); closing the iterator early
        cancels the upstream LLM stream.
        """
        return self._stream(_Run(check_question(question)), top_k=top_k, filter=filter)

    def stream_answer_async(
        self, question: str, chunks: Sequence[RetrievalResult]
    ) -> AsyncIterator[StreamEvent]:
        """The events of `stream_async`, answering from `chunks` as given: no rewriting, retrieval or reranking.

        For callers that retrieve themselves (say, from several stores fused with `rrf`); `[n]` citations
        number the chunks in the order given. The question is checked now, as in `stream_async`.
        """
        run = _Run(check_question(question))
        run.queries = [run.question]
        run.chunks = list(chunks)
        run.metadata.update(
            llm=self.llm_name, embedding_model=self.embedding_model.name, num_candidates=len(run.chunks)
        )
        return self._stream(run, top_k=None, filter=None, prepared=True)

    async def _stream(
        self,
        run: _Run,
        *,
        top_k: int | None,
        filter: Mapping[str, Any] | None,
        prepared: bool = False,
    ) -> AsyncIterator[StreamEvent]:
        # Spans stay detached across yields (each step may run in another task); `use_span` attaches the root
        # only around `_prepare`, so retrieval's spans and tasks are its children.
        attributes = self._trace_attributes(run, top_k)
        with tracing.detached_span("mini.query", attributes, enabled=self._tracing) as root:
            try:
                if not prepared:
                    with tracing.use_span(root):
                        await self._prepare(run, top_k=top_k, filter=filter)
                yield StreamEvent("sources", [c.as_source(n) for n, c in enumerate(run.chunks, start=1)])
                tracker = CitationStream(run.chunks)
                parts: list[str] = []
                since = time.perf_counter()
                before = run.usage
                attributes = {"mini.chunks": len(run.chunks)}
                with tracing.detached_span("mini.generate", attributes, parent=root) as span:
                    async for text in self._generate_stream(run):
                        parts.append(text)
                        yield StreamEvent("token", text)
                        for citation in tracker.feed(text):
                            yield StreamEvent("citation", asdict(citation))
                    usage = Usage(
                        run.usage.prompt_tokens - before.prompt_tokens,
                        run.usage.completion_tokens - before.completion_tokens,
                    )
                    self._trace_generation(span, run, usage)
                run.add_time("generate", since)
                run.metadata["answer_type"] = self._answer_type(run)
                root.set_attribute("mini.hits", len(run.chunks))
                answer = "".join(parts)
                last = StreamEvent(
                    "done",
                    {
                        "answer": answer,
                        "citations": [asdict(c) for c in build_citations(answer, run.chunks)],
                        "rewritten_queries": run.queries,
                        "metadata": run.finish_metadata(),
                    },
                )
            except Exception as exc:
                tracing.record_error(root, exc)
                log_failure(log, "stream failed", exc)
                last = StreamEvent("error", error_payload(exc))
        yield last

    async def _generate_stream(self, run: _Run) -> AsyncIterator[str]:
        if self.llm is None or not run.chunks:
            answer, _ = await self._generate(run.question, run.chunks)
            for i, word in enumerate(answer.split(" ")):
                yield word if i == 0 else " " + word
            return
        messages = prompts.answer_messages(run.question, prompts.format_context(run.chunks))
        stream = self.llm.stream(messages)
        try:
            async for delta in stream:
                if delta.usage is not None:
                    run.usage = run.usage + delta.usage
                if delta.text:
                    yield delta.text
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    # -- ingestion ---------------------------------------------------------------------------------------------

    async def index_documents_async(
        self,
        items: Sequence[str | Path | Document],
        *,
        concurrency: int | None = None,
        batch_size: int | None = None,
        glob: str | None = None,
        prune: bool = False,
        progress: ProgressCallback | None = None,
    ) -> IngestReport:
        """Load, chunk, embed and store files, directories, http(s) URLs or `Document`s; one report for all.

        Idempotent and resumable: unchanged files cost nothing, a changed file's chunks are replaced in one
        commit, and after a crash a re-run embeds only what is missing. Texts are embedded in batches of
        `batch_size` across files, `concurrency` batches at a time. Failures are listed per file in the
        report, never raised for the whole batch (except errors that would fail every file, like a bad key).
        `prune=True` deletes stored files under the given directories that no longer exist.
        """
        ingestor = self.ingestor(concurrency=concurrency, batch_size=batch_size)
        with tracing.suppress(not self._tracing):
            return await ingestor.run(items, glob=glob, prune=prune, progress=progress)

    def ingestor(
        self,
        store: VectorStore | None = None,
        *,
        concurrency: int | None = None,
        batch_size: int | None = None,
    ) -> Ingestor:
        """An `Ingestor` with this RAG's embedding model and embedding cache, writing to `store` (default: this
        RAG's store), for callers that keep it around (its `report` is live during a run) or write elsewhere."""
        from mini.ingest.pipeline import DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY, Ingestor

        return Ingestor(
            store if store is not None else self.vector_store,
            self.embedding_model,
            concurrency=concurrency or DEFAULT_CONCURRENCY,
            batch_size=batch_size or DEFAULT_BATCH_SIZE,
            cache=self._embedding_cache,
        )

    async def index_document_async(self, document: str | Path | Document) -> IngestReport:
        """Index one file, URL or `Document` (see `index_documents_async`)."""
        return await self.index_documents_async([document])

    async def index_texts_async(
        self,
        texts: Sequence[str],
        *,
        sources: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any]] | None = None,
    ) -> IngestReport:
        """Index in-memory texts. Each needs a stable source name to be updated later; without `sources`,
        a text is named by its content hash ("text:<hash>"), so the same text is indexed once."""
        from mini.ingest.chunking import content_hash

        if isinstance(texts, str):
            raise InvalidInputError("texts must be a list of strings, not a single string")
        if sources is not None and len(sources) != len(texts):
            raise InvalidInputError(f"got {len(sources)} sources for {len(texts)} texts")
        if metadata is not None and len(metadata) != len(texts):
            raise InvalidInputError(f"got {len(metadata)} metadata entries for {len(texts)} texts")
        documents = []
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidInputError(f"text {i} is {type(text).__name__}, not str")
            source = sources[i] if sources is not None else f"text:{content_hash(text)}"
            documents.append(Document(text, source, dict(metadata[i]) if metadata is not None else {}))
        return await self.index_documents_async(documents)

    # -- agent ----------------------------------------------------------------------------------------------------

    async def agent_query_async(
        self,
        question: str,
        *,
        tools: Sequence[Callable[..., Any]] = (),
        max_turns: int = 4,
        max_tokens: int | None = None,
        time_budget_s: float | None = 120.0,
        max_tool_concurrency: int = 4,
        output_model: type[Any] | None = None,
        filter: Mapping[str, Any] | None = None,
    ) -> RAGResponse:
        """Answer with an agent loop: the LLM searches (`search_documents`, built in) and calls `tools` (plain
        async or sync functions with type hints; sync ones run in a thread), all calls of one turn
        concurrently, until it answers with `[n]` citations. The run's trace (turns, tool calls with timings)
        is in `metadata["agent"]`. `output_model` (a pydantic model): the answer must parse into it (one
        repair attempt), the result in `metadata["output"]`. Budgets raise `BudgetExceededError` with the
        transcript. Without an LLM this is `query_async`, and `metadata["agent"]` says so.
        """
        from mini.agent.loop import AgentConfig, run_agent

        config = AgentConfig(
            max_turns, max_tool_concurrency, max_tokens=max_tokens, time_budget_s=time_budget_s
        )
        question = check_question(question)
        if self.llm is None:
            response = await self.query_async(question, filter=filter)
            response.metadata["agent"] = {"fallback": "no LLM configured: answered by the standard pipeline"}
            return response
        return await run_agent(
            self, self.llm, question, tools=tools, config=config, output_model=output_model, filter=filter
        )

    def agent_stream_async(
        self,
        question: str,
        *,
        tools: Sequence[Callable[..., Any]] = (),
        max_turns: int = 4,
        max_tokens: int | None = None,
        time_budget_s: float | None = 120.0,
        max_tool_concurrency: int = 4,
        output_model: type[Any] | None = None,
        filter: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """`agent_query_async` as events: `tool_call`, `tool_result`, `token`, `citation`, `done`; a failure
        (a budget, a provider error) is an `error` event, then the end. Offline: `stream_async`'s events."""
        question = check_question(question)
        if self.llm is None:
            return self._offline_agent_stream(question, filter)
        from mini.agent.loop import AgentConfig, AgentRun

        config = AgentConfig(
            max_turns, max_tool_concurrency, max_tokens=max_tokens, time_budget_s=time_budget_s
        )
        run = AgentRun(self, self.llm, question, tools, config, output_model, filter)
        return _errors_as_events(run.events())

    async def _offline_agent_stream(
        self, question: str, filter: Mapping[str, Any] | None
    ) -> AsyncIterator[StreamEvent]:
        async for event in self.stream_async(question, filter=filter):
            if event.type == "done":
                event.data["metadata"]["agent"] = {
                    "fallback": "no LLM configured: answered by the standard pipeline"
                }
            yield event

    async def aclose(self) -> None:
        """Close clients opened on the running loop."""
        await self.embedding_model.aclose()
        await self.vector_store.aclose()
        if self.llm is not None:
            await self.llm.aclose()

    async def __aenter__(self) -> AgenticRAG:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- sync twins: derived from the async originals (same signatures), run on the portal loop -----------------

    rewrite_query = _portal.sync_twin(rewrite_query_async)
    retrieve = _portal.sync_twin(retrieve_async)
    rerank = _portal.sync_twin(rerank_async)
    generate_answer = _portal.sync_twin(generate_answer_async)
    query = _portal.sync_twin(query_async)
    query_batch = _portal.sync_twin(query_batch_async)
    iter_query_batch = _portal.iterator_twin(iter_query_batch_async)
    stream = _portal.iterator_twin(stream_async)
    stream_answer = _portal.iterator_twin(stream_answer_async)
    index_documents = _portal.sync_twin(index_documents_async)
    index_document = _portal.sync_twin(index_document_async)
    index_texts = _portal.sync_twin(index_texts_async)
    agent_query = _portal.sync_twin(agent_query_async)
    agent_stream = _portal.iterator_twin(agent_stream_async)
    close = _portal.sync_twin(aclose)


async def _errors_as_events(events: AsyncIterator[StreamEvent]) -> AsyncIterator[StreamEvent]:
    try:
        async for event in events:
            yield event
    except Exception as exc:
        log_failure(log, "agent stream failed", exc)
        data = error_payload(exc)
        transcript = getattr(exc, "transcript", None)
        if transcript is not None:
            data["transcript"] = transcript
        yield StreamEvent("error", data)
    finally:
        await events.aclose()  # type: ignore[attr-defined]
