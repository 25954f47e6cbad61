"""`AgenticRAG`: the facade users hold. Construction, ingestion, conversations, documents and the agent live
here; every answer goes through the one `QueryPipeline` (mini.query.pipeline). Every method has an `_async`
original and a sync twin derived from it (`mini._portal`), usable anywhere, Jupyter included.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mini import _portal, _rag013, tracing
from mini._deprecation import legacy_keywords
from mini.config import LLMConfig, ObservabilityConfig, RerankerConfig, RetrievalConfig, load_settings
from mini.embeddings.base import EmbeddingModel
from mini.errors import InvalidInputError
from mini.ingest.cache import EmbeddingCache
from mini.llms.base import LLM, create_llm, resolve_llm_config
from mini.llms.extractive import ExtractiveGenerator
from mini.query.batch import DEFAULT_CONCURRENCY as DEFAULT_BATCH_CONCURRENCY
from mini.query.batch import BatchResult, check_batch, iter_batch
from mini.query.pipeline import Options, QueryPipeline, Run, check_question
from mini.rerankers.base import Reranker
from mini.rerankers.factory import create_reranker
from mini.stores.base import VectorStore
from mini.types import Document, RAGResponse, RetrievalResult, StreamEvent

if TYPE_CHECKING:
    from mini.conversation import Conversation, Turn
    from mini.documents import DeleteReport, DocumentInfo
    from mini.ingest.netguard import FetchPolicy
    from mini.ingest.pipeline import Ingestor, IngestReport, ProgressCallback


_OFFLINE_AGENT = {"fallback": "no LLM configured: answered by the standard pipeline"}


class AgenticRAG:
    """Retrieval-augmented answers over a vector store. Every method has an `_async` original and a sync twin.

    Without an LLM (no `llm_config`, no OPENAI_API_KEY/MINI_LLM) answers are extractive: the retrieved
    sentences that best match the question, with `[n]` citations, and query rewriting is skipped.
    Configs not given are read from the settings (`mini.toml`, `MINI_*` environment, `.env`; see
    docs/configuration.md); construction does no other I/O.

    Per-question options, on every answering method: `top_k` (chunks retrieved), `filter` (metadata filter,
    see `VectorStore.search`), `mode` ("dense", "keyword" or "hybrid"; default from `RetrievalConfig`).
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
        if retrieval_config is None or reranker_config is None:
            # Not given: the settings' views (mini.toml, MINI_* environment, .env; defaults otherwise).
            settings = load_settings()
            retrieval_config = retrieval_config or RetrievalConfig.from_settings(settings)
            reranker_config = reranker_config or RerankerConfig.from_settings(settings)
        self.retrieval_config = retrieval_config
        self.reranker_config = reranker_config
        self.observability_config = observability_config or ObservabilityConfig()
        _rag013.export_to_langfuse(self.observability_config)  # 0.1.3's keys, if given
        if llm is None:
            resolved = resolve_llm_config(llm_config)
            llm = create_llm(resolved) if resolved is not None else None
        self.llm = llm
        reranker = _rag013.given_reranker(reranker, self.reranker_config)
        self.reranker = reranker or create_reranker(self.reranker_config, self.llm)
        self.extractive = ExtractiveGenerator()
        self.pipeline = QueryPipeline(self)
        # Vectors by (model, content hash), shared by every ingestion run of this object.
        self._embedding_cache = EmbeddingCache()

    def __repr__(self) -> str:
        return f"AgenticRAG(store={self.vector_store!r}, embeddings={self.embedding_model!r}, llm={self.llm_name!r})"

    @property
    def llm_name(self) -> str:
        return self.pipeline.llm_name

    @property
    def _tracing(self) -> bool:
        return self.observability_config.enabled

    # -- stages, one at a time ---------------------------------------------------------------------------------

    async def rewrite_query_async(self, query: str) -> list[str]:
        """The queries to search: the original first, then up to `num_query_variants` LLM rewrites.

        Without an LLM, or with rewriting disabled, just the original.
        """
        queries, _usage = await self.pipeline.rewrite(check_question(query))
        return queries

    async def retrieve_async(
        self,
        queries: Sequence[str] | str,
        *,
        top_k: int | None = None,
        filter: Mapping[str, Any] | None = None,
        mode: str | None = None,
    ) -> list[RetrievalResult]:
        """Search for every query with every leg of the mode (dense, keyword, both) at once and fuse the
        rankings by weighted reciprocal rank (RRF), deduplicated by chunk id.

        All queries are embedded in one batched call and searched in one multi-vector store call (the
        embedded store shares one scan among them, and among other questions searching at the same time);
        the keyword searches run meanwhile. See `RetrievalConfig` for the legs and their weights.
        """
        if isinstance(queries, str):
            queries = [queries]
        run = Run("", Options(top_k=top_k, filter=filter, mode=mode))
        return await self.pipeline.retrieve(run, queries)

    async def rerank_async(
        self, query: str, chunks: Sequence[RetrievalResult], *, top_k: int | None = None
    ) -> list[RetrievalResult]:
        """Reorder candidates, best first, keeping `top_k` (default `rerank_top_k`)."""
        return await self.pipeline.rerank(query, chunks, top_k=top_k)

    async def generate_answer_async(self, query: str, chunks: Sequence[RetrievalResult]) -> str:
        """An answer to `query` from `chunks` with `[n]` citations (n = position in `chunks`, 1-based)."""
        run = self.pipeline.answer_from(Run(check_question(query)), chunks)
        answer, _usage = await self.pipeline.generate(run)
        return answer

    async def search_async(
        self,
        question: str,
        *,
        top_k: int | None = None,
        filter: Mapping[str, Any] | None = None,
        mode: str | None = None,
        rewrite: bool | None = None,
    ) -> list[RetrievalResult]:
        """The chunks `query_async` would answer from (rewrite, retrieve, rerank), without generating."""
        run = Run(check_question(question), Options(top_k=top_k, filter=filter, mode=mode, rewrite=rewrite))
        return await self.pipeline.search(run)

    # -- answers ---------------------------------------------------------------------------------------------------

    @legacy_keywords(_rag013.QUERY_KEYWORDS, _rag013.legacy_query)
    async def query_async(
        self,
        question: str,
        *,
        top_k: int | None = None,
        filter: Mapping[str, Any] | None = None,
        mode: str | None = None,
        rerank_top_k: int | None = None,
    ) -> RAGResponse:
        """Answer a question from the indexed documents, with citations and per-stage timings.

        `top_k` chunks are retrieved and reranked, the best `rerank_top_k` answer (defaults: `RetrievalConfig`);
        `response.retrieved_chunks[i].rank` is i + 1."""
        options = Options(top_k=top_k, filter=filter, mode=mode, rerank_top_k=rerank_top_k)
        return await self.pipeline.answer(Run(check_question(question), options))

    async def query_batch_async(
        self,
        questions: Sequence[str],
        *,
        concurrency: int = DEFAULT_BATCH_CONCURRENCY,
        top_k: int | None = None,
        filter: Mapping[str, Any] | None = None,
        mode: str | None = None,
    ) -> list[BatchResult]:
        """Answer many questions, each its own pipeline, at most `concurrency` at once; one `BatchResult` per
        question in input order, with `.response` or `.error` (a failing question never stops the others)."""
        finished = self.iter_query_batch_async(
            questions, concurrency=concurrency, top_k=top_k, filter=filter, mode=mode
        )
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
        mode: str | None = None,
    ) -> AsyncIterator[BatchResult]:
        """`query_batch_async`'s results as each question finishes (completion order; `.index` says which).
        Closing the iterator early cancels the questions still running."""
        checked = check_batch(
            questions, concurrency
        )  # now: iter_batch, a generator, would check on first use

        async def answer(question: str) -> RAGResponse:
            return await self.query_async(question, top_k=top_k, filter=filter, mode=mode)

        return iter_batch(answer, checked, concurrency=concurrency)

    def stream_async(
        self,
        question: str,
        *,
        top_k: int | None = None,
        filter: Mapping[str, Any] | None = None,
        mode: str | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Events `sources` -> `token`* (with `citation` as each `[n]` completes) -> `done`; on failure `error`.

        The question is checked now (an empty one raises before anything streams); closing the iterator early
        cancels the upstream LLM stream.
        """
        run = Run(check_question(question), Options(top_k=top_k, filter=filter, mode=mode))
        return self.pipeline.stream(run)

    def stream_answer_async(
        self, question: str, chunks: Sequence[RetrievalResult]
    ) -> AsyncIterator[StreamEvent]:
        """The events of `stream_async`, answering from `chunks` as given: no rewriting, retrieval or reranking.

        For callers that retrieve themselves; `[n]` citations number the chunks in the order given. The
        question is checked now, as in `stream_async`.
        """
        run = self.pipeline.answer_from(Run(check_question(question)), chunks)
        return self.pipeline.stream(run, prepared=True)

    # -- conversations -------------------------------------------------------------------------------------------

    def conversation(self, history: Sequence[Turn] | None = None) -> Conversation:
        """A conversation over this RAG: follow-ups are condensed with the history into standalone questions
        (see `mini.conversation.Conversation`)."""
        from mini.conversation import Conversation

        return Conversation(self, history=history)

    async def chat_async(
        self,
        message: str,
        history: Sequence[Turn | tuple[str, str] | Mapping[str, str]] | None = None,
        *,
        top_k: int | None = None,
        filter: Mapping[str, Any] | None = None,
        mode: str | None = None,
    ) -> RAGResponse:
        """Answer `message` as the next turn of a conversation whose earlier turns are `history` (Turns,
        (question, answer) pairs, or OpenAI-style `{"role", "content"}` messages). The condensed question is
        in `metadata["condensed_question"]`. For a conversation that remembers, use `conversation()`."""
        from mini.conversation import Conversation, as_turns

        chat = Conversation(self, history=as_turns(history or ()))
        return await chat.ask_async(message, top_k=top_k, filter=filter, mode=mode)

    # -- ingestion ---------------------------------------------------------------------------------------------

    @legacy_keywords(_rag013.INDEX_DOCUMENTS_KEYWORDS, _rag013.legacy_index_documents)
    async def index_documents_async(
        self,
        items: Sequence[str | Path | Document],
        *,
        concurrency: int | None = None,
        batch_size: int | None = None,
        glob: str | None = None,
        prune: bool = False,
        progress: ProgressCallback | None = None,
        fetch_policy: FetchPolicy | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> IngestReport:
        """Load, chunk, embed and store files, directories, http(s) URLs or `Document`s; one report for all.

        Idempotent and resumable: unchanged files cost nothing, a changed file's chunks are replaced in one
        commit, and after a crash a re-run embeds only what is missing. Texts are embedded in batches of
        `batch_size` across files, `concurrency` batches at a time. Failures are listed per file in the
        report, never raised for the whole batch (except errors that would fail every file, like a bad key).
        `prune=True` deletes stored files under the given directories that no longer exist.
        `fetch_policy` says which addresses URLs may lead to (default: any; `FetchPolicy.refusing()` refuses
        loopback, private and other non-public addresses, see `mini.ingest.netguard`). `metadata` goes on every
        chunk (filterable like the loaders' own keys).
        """
        ingestor = self.ingestor(concurrency=concurrency, batch_size=batch_size, fetch_policy=fetch_policy)
        with tracing.suppress(not self._tracing):
            return await ingestor.run(items, glob=glob, prune=prune, progress=progress, metadata=metadata)

    def ingestor(
        self,
        store: VectorStore | None = None,
        *,
        concurrency: int | None = None,
        batch_size: int | None = None,
        fetch_policy: FetchPolicy | None = None,
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
            fetch_policy=fetch_policy,
        )

    @legacy_keywords(_rag013.INDEX_DOCUMENT_KEYWORDS, _rag013.legacy_index_document)
    async def index_document_async(
        self, document: str | Path | Document, metadata: Mapping[str, Any] | None = None
    ) -> IngestReport:
        """Index one file, URL, directory or `Document` (see `index_documents_async`). One thing asked for:
        if nothing of it could be indexed, the failure is raised (`DocumentError`), not only reported."""
        report = await self.index_documents_async([document], metadata=metadata)
        report.raise_if_nothing_indexed()
        return report

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

    # -- documents ---------------------------------------------------------------------------------------------------

    async def list_documents_async(self) -> list[DocumentInfo]:
        """One entry per ingested document (a file, a URL, or texts sharing a source; a JSONL file is one
        document): source, chunk count, content fingerprint. See `mini.documents`."""
        from mini.documents import list_documents

        return await list_documents(self.vector_store)

    async def delete_documents_async(self, sources: Sequence[str]) -> DeleteReport:
        """Delete every chunk of these documents (all rows of a JSONL file). An unknown source raises
        `DocumentNotFoundError` and nothing is deleted."""
        from mini.documents import delete_documents

        return await delete_documents(self.vector_store, sources)

    # -- agent ----------------------------------------------------------------------------------------------------

    def _agent_run(
        self,
        question: str,
        tools: Sequence[Callable[..., Any]],
        max_turns: int,
        max_tokens: int | None,
        time_budget_s: float | None,
        max_tool_concurrency: int,
        output_model: type[Any] | None,
        filter: Mapping[str, Any] | None,
    ) -> Any:
        from mini.agent.loop import AgentConfig, AgentRun

        async def search(query: str, top_k: int) -> list[RetrievalResult]:
            # The pipeline's retrieval and rerank stages for the agent's own query. No rewriting: the agent
            # writes its queries itself (a rewrite would be a second LLM call per search).
            return await self.search_async(query, top_k=top_k, filter=filter, rewrite=False)

        assert self.llm is not None
        config = AgentConfig(
            max_turns, max_tool_concurrency, max_tokens=max_tokens, time_budget_s=time_budget_s
        )
        return AgentRun(
            search, self.llm, question, tools, config, output_model, tracing_enabled=self._tracing
        )

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
        """Answer with an agent loop: the LLM searches (`search_documents`, built in: the pipeline's retrieval
        and rerank stages) and calls `tools` (plain async or sync functions with type hints; sync ones run in a
        thread), all calls of one turn concurrently, until it answers with `[n]` citations. The run's trace
        (turns, tool calls with timings) is in `metadata["agent"]`. `output_model` (a pydantic model): the
        answer must parse into it (one repair attempt), the result in `metadata["output"]`. Budgets raise
        `BudgetExceededError` with the transcript. Without an LLM this is `query_async`, and
        `metadata["agent"]` says so.
        """
        question = check_question(question)
        if self.llm is None:
            response = await self.query_async(question, filter=filter)
            response.metadata["agent"] = dict(_OFFLINE_AGENT)
            return response
        run = self._agent_run(
            question, tools, max_turns, max_tokens, time_budget_s, max_tool_concurrency, output_model, filter
        )
        result: RAGResponse = await run.result()
        return result

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
        run = self._agent_run(
            question, tools, max_turns, max_tokens, time_budget_s, max_tool_concurrency, output_model, filter
        )
        from mini.agent.loop import errors_as_events

        return errors_as_events(run.events())

    async def _offline_agent_stream(
        self, question: str, filter: Mapping[str, Any] | None
    ) -> AsyncIterator[StreamEvent]:
        async for event in self.stream_async(question, filter=filter):
            if event.type == "done":
                event.data["metadata"]["agent"] = dict(_OFFLINE_AGENT)
            yield event

    async def get_stats_async(self) -> dict[str, Any]:
        """Chunks stored and the main settings (mini-rag 0.1.3's keys)."""
        return await _rag013.stats(self)

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
    search = _portal.sync_twin(search_async)
    query = _portal.sync_twin(query_async)
    query_batch = _portal.sync_twin(query_batch_async)
    iter_query_batch = _portal.iterator_twin(iter_query_batch_async)
    stream = _portal.iterator_twin(stream_async)
    stream_answer = _portal.iterator_twin(stream_answer_async)
    chat = _portal.sync_twin(chat_async)
    list_documents = _portal.sync_twin(list_documents_async)
    delete_documents = _portal.sync_twin(delete_documents_async)
    index_documents = _portal.sync_twin(index_documents_async)
    index_document = _portal.sync_twin(index_document_async)
    index_texts = _portal.sync_twin(index_texts_async)
    agent_query = _portal.sync_twin(agent_query_async)
    agent_stream = _portal.iterator_twin(agent_stream_async)
    get_stats = _portal.sync_twin(get_stats_async)
    close = _portal.sync_twin(aclose)
