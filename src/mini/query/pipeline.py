"""The one query pipeline: rewrite -> retrieve (hybrid legs over one or more stores) -> rerank -> generate or
stream, with citations, around one per-question run record.

Everything that answers a question goes through `QueryPipeline`: `AgenticRAG.query/stream/query_batch`, the
evaluation runner, the server's `/v1/query[/stream]`, `/v1/chat/stream` (a session's uploads are an extra store
searched by the same legs and fused once), `/v1/chat/completions`, conversations and the agent's search tool.

One fallback policy for the optional stages (rewrite, rerank; condensing in `mini.conversation`): they degrade,
with a warning in the response metadata, only on a retryable provider error (429, 5xx, timeout: the provider
already retried). Authentication errors and bad requests surface as typed errors: a wrong key must never look
like a working system with slightly worse answers.

The pipeline reads its components (store, embeddings, LLM, reranker, configs) from the object it is given
(`Components`, which `AgenticRAG` is), at each call: replacing `rag.llm` takes effect at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

from mini import tracing
from mini._checks import at_least, check_text
from mini._limits import is_retryable
from mini._rag013 import ResponseMetadata
from mini.config import ObservabilityConfig, RetrievalConfig
from mini.embeddings.base import EmbeddingModel
from mini.errors import EmptyQuestionError, InvalidInputError, ProviderError, error_payload, log_failure
from mini.llms.base import LLM, Usage
from mini.llms.extractive import NO_CONTEXT_ANSWER, ExtractiveGenerator
from mini.query import prompts
from mini.query.citations import CitationStream, build_citations
from mini.query.retrieval import MODES, HybridRetriever, Mode, resolve_mode
from mini.rerankers.base import Reranker
from mini.stores.base import VectorStore
from mini.stores.filters import parse_filter
from mini.types import RAGResponse, RetrievalResult, StreamEvent

log = logging.getLogger("mini.query")

STAGES = ("rewrite", "embed", "search", "rerank", "generate")


def check_question(question: Any) -> str:
    """Reject empty questions, and text no provider or store can take (a lone surrogate, NUL), before any I/O."""
    if not isinstance(question, str):
        raise InvalidInputError(f"the question must be a string, not {type(question).__name__}")
    if not question.strip():
        raise EmptyQuestionError("the question is empty")
    return check_text(question.strip(), "the question")


def degrade_or_raise(exc: ProviderError) -> None:
    """The one fallback rule of the optional stages: keep going (the caller records a warning) only when the
    provider is struggling; a configuration error (auth, bad request, unknown model) surfaces."""
    if not is_retryable(exc):
        raise exc


class Components(Protocol):
    """What the pipeline needs of its owner (`AgenticRAG`): read at each call."""

    vector_store: VectorStore
    embedding_model: EmbeddingModel
    llm: LLM | None
    reranker: Reranker
    extractive: ExtractiveGenerator
    retrieval_config: RetrievalConfig
    observability_config: ObservabilityConfig


@dataclass(frozen=True)
class Options:
    """Per-question choices; None takes the configured value."""

    top_k: int | None = None
    filter: Mapping[str, Any] | None = None
    mode: str | None = None
    rewrite: bool | None = None
    rerank_top_k: int | None = None  # chunks kept after reranking; None: RetrievalConfig.rerank_top_k
    extra_stores: Sequence[VectorStore] = ()
    instructions: str | None = None  # added to the answer's system prompt (a chat client's system message)

    def __post_init__(self) -> None:
        # Checked when the question is asked, before any I/O (a stream raises before it starts, the server
        # answers 422): a malformed filter or an unknown mode must not cost a rewrite call first.
        parse_filter(self.filter)
        at_least(1, rerank_top_k=self.rerank_top_k)
        if self.mode is not None and self.mode not in MODES:
            raise InvalidInputError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")


@dataclass
class Run:
    """What one question accumulates on its way through the pipeline."""

    question: str
    options: Options = field(default_factory=Options)
    started: float = field(default_factory=time.perf_counter)
    timings: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    chunks: list[RetrievalResult] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    _context: tuple[list[RetrievalResult], str] | None = field(default=None, repr=False, compare=False)

    def context(self) -> str:
        """The numbered sources of `chunks` as the answer prompt shows them; built once per set of chunks, since
        the prompt and the response's `context_used` both need it (a few thousand characters to normalise)."""
        if self._context is None or self._context[0] is not self.chunks:
            self._context = (self.chunks, prompts.format_context(self.chunks))
        return self._context[1]

    def add_time(self, stage: str, since: float) -> None:
        self.timings[stage] = self.timings.get(stage, 0.0) + (time.perf_counter() - since) * 1000.0

    def finish_metadata(self) -> dict[str, Any]:
        timings = {k: round(v, 3) for k, v in self.timings.items()}
        timings["total"] = round((time.perf_counter() - self.started) * 1000.0, 3)
        meta = {**self.metadata, "timings_ms": timings, "usage": self.usage.as_dict()}
        if self.warnings:
            meta["warnings"] = list(self.warnings)
        return meta


class QueryPipeline:
    """The stages and their two drivers, `answer` (whole) and `stream` (events)."""

    def __init__(self, parts: Components) -> None:
        self.parts = parts

    # -- stages -------------------------------------------------------------------------------------------------

    @property
    def _tracing(self) -> bool:
        return self.parts.observability_config.enabled

    @property
    def llm_name(self) -> str:
        llm = self.parts.llm
        return llm.name if llm is not None else self.parts.extractive.name

    def reranker_name(self) -> str:
        return self.parts.reranker.name if self.parts.retrieval_config.use_reranking else "disabled"

    def mode(self, options: Options) -> Mode:
        return resolve_mode(self.parts.retrieval_config, options.mode)

    async def rewrite(self, question: str) -> tuple[list[str], Usage]:
        """The original question first, then up to `num_query_variants` LLM rewrites (raises on failure)."""
        n = self.parts.retrieval_config.num_query_variants
        llm = self.parts.llm
        if llm is None or not self.parts.retrieval_config.use_query_rewriting or n == 0:
            return [question], Usage()
        completion = await llm.complete(prompts.rewrite_messages(question, n=n), temperature=0.0)
        return [question, *prompts.parse_rewrites(completion.text, original=question, n=n)], completion.usage

    async def _rewrite_stage(self, run: Run) -> None:
        since = time.perf_counter()
        llm = self.parts.llm
        wanted = run.options.rewrite
        with tracing.span("mini.rewrite") as span:
            if llm is None:
                run.metadata["rewrite"] = "skipped: no LLM configured"
                run.queries = [run.question]
            elif wanted is False or (wanted is None and not self.parts.retrieval_config.use_query_rewriting):
                run.metadata["rewrite"] = "disabled"
                run.queries = [run.question]
            else:
                try:
                    run.queries, usage = await self.rewrite(run.question)
                    run.usage = run.usage + usage  # rewriting's tokens count toward the question's usage
                    run.metadata["rewrite"] = "ok"
                    tracing.set_model_call(span, llm.name, usage)
                except ProviderError as exc:
                    degrade_or_raise(exc)  # rewriting only widens recall
                    tracing.record_error(span, exc)
                    run.queries = [run.question]
                    run.metadata["rewrite"] = "failed"
                    run.warnings.append(f"query rewriting failed, searched the original question only: {exc}")
            span.set_attribute("mini.rewrite", run.metadata["rewrite"])
            span.set_attribute("mini.queries", len(run.queries))
        run.add_time("rewrite", since)

    async def retrieve(self, run: Run, queries: Sequence[str]) -> list[RetrievalResult]:
        """Every query with every leg of the mode over the store (and the run's extra stores), fused."""
        queries = [check_question(q) for q in queries]
        if not queries:
            raise InvalidInputError("retrieve needs at least one query")
        parts = self.parts
        # Extra stores (a chat session's uploads) first: on an exact score tie the user's own document wins.
        retriever = HybridRetriever(
            [*run.options.extra_stores, parts.vector_store], parts.embedding_model, parts.retrieval_config
        )
        top_k = run.options.top_k or parts.retrieval_config.top_k
        attributes = {"mini.queries": len(queries), "mini.top_k": top_k}
        with tracing.span("mini.retrieve", attributes, enabled=self._tracing) as span:
            retrieval = await retriever.retrieve(
                queries,
                question=run.question or queries[0],
                top_k=top_k,
                filter=run.options.filter,
                mode=self.mode(run.options),
            )
            span.set_attribute("mini.retrieval_mode", retrieval.mode)
            span.set_attribute("mini.hits", len(retrieval.results))
        # Stages add up to the wall time: the keyword and prefilter legs overlap the embedding and dense search.
        run.timings["embed"] += retrieval.embed_ms
        run.timings["search"] += max(0.0, retrieval.wall_ms - retrieval.embed_ms)
        run.metadata["retrieval"] = retrieval.metadata()
        if run.options.extra_stores:
            run.metadata["retrieval"]["stores"] = 1 + len(run.options.extra_stores)
        run.warnings.extend(retrieval.warnings)
        return retrieval.results

    async def rerank(
        self, question: str, chunks: Sequence[RetrievalResult], *, top_k: int | None = None
    ) -> list[RetrievalResult]:
        """Reorder candidates, best first, keeping `top_k` (default `rerank_top_k`); raises on failure."""
        config = self.parts.retrieval_config
        k = top_k or config.rerank_top_k
        attributes: tracing.Attributes = {
            "mini.candidates": len(chunks),
            "mini.top_k": k,
            "mini.reranker": self.reranker_name(),
        }
        with tracing.span("mini.rerank", attributes, enabled=self._tracing) as span:
            if not config.use_reranking:
                return list(chunks[:k])
            ranked = await self.parts.reranker.rerank(question, chunks, top_k=k)
            span.set_attribute("mini.hits", len(ranked))
            return ranked

    async def prepare(self, run: Run) -> None:
        """Rewrite, retrieve and rerank: fills `run.queries` and `run.chunks`."""
        await self._rewrite_stage(run)
        candidates = await self.retrieve(run, run.queries)
        since = time.perf_counter()
        keep = run.options.rerank_top_k or self.parts.retrieval_config.rerank_top_k
        try:
            run.chunks = await self.rerank(run.question, candidates, top_k=keep)
        except ProviderError as exc:
            degrade_or_raise(exc)  # reranking only improves order: keep the fused retrieval order
            run.chunks = candidates[:keep]
            run.metadata["rerank"] = "failed"
            run.warnings.append(f"reranking failed, kept the retrieval order: {exc}")
        run.chunks = [replace(hit, rank=n) for n, hit in enumerate(run.chunks, 1)]
        run.add_time("rerank", since)
        run.metadata.update(
            llm=self.llm_name,
            embedding_model=self.parts.embedding_model.name,
            reranker=self.reranker_name(),
            num_candidates=len(candidates),
        )

    async def search(self, run: Run) -> list[RetrievalResult]:
        """The chunks a question would be answered from (`prepare` without generation)."""
        await self.prepare(run)
        return run.chunks

    def _messages(self, run: Run) -> list[dict[str, str]]:
        messages = prompts.answer_messages(run.question, run.context())
        if run.options.instructions:
            messages[0] = {
                "role": "system",
                "content": f"{messages[0]['content']}\n\n{run.options.instructions}",
            }
        return messages

    async def generate(self, run: Run) -> tuple[str, Usage]:
        if not run.chunks:
            return NO_CONTEXT_ANSWER, Usage()
        llm = self.parts.llm
        if llm is None:
            answer = await self.parts.extractive.answer(run.question, run.chunks, self.parts.embedding_model)
            return answer, Usage()
        completion = await llm.complete(self._messages(run))
        return completion.text, completion.usage

    def answer_type(self, run: Run) -> str:
        if not run.chunks:
            return "no_context"
        return "llm" if self.parts.llm is not None else "extractive"

    def _trace_attributes(self, run: Run) -> dict[str, int]:
        top_k = run.options.top_k or self.parts.retrieval_config.top_k
        return {"mini.question_chars": len(run.question), "mini.top_k": top_k}

    def _trace_generation(self, span: tracing.Span, run: Run, usage: Usage) -> None:
        """The answer's span: how it was made, and the model's name and tokens when an LLM wrote it."""
        span.set_attribute("mini.answer_type", self.answer_type(run))
        llm = self.parts.llm
        if llm is not None and run.chunks:
            tracing.set_model_call(span, llm.name, usage)

    # -- drivers --------------------------------------------------------------------------------------------------

    async def answer(self, run: Run) -> RAGResponse:
        """The whole answer, with citations and per-stage timings."""
        with tracing.span("mini.query", self._trace_attributes(run), enabled=self._tracing) as root:
            await self.prepare(run)
            since = time.perf_counter()
            with tracing.span("mini.generate", {"mini.chunks": len(run.chunks)}) as span:
                answer, usage = await self.generate(run)
                self._trace_generation(span, run, usage)
            run.usage = run.usage + usage
            run.add_time("generate", since)
            run.metadata["answer_type"] = self.answer_type(run)
            root.set_attribute("mini.hits", len(run.chunks))
        return RAGResponse(
            answer=answer,
            original_query=run.question,
            rewritten_queries=run.queries,
            retrieved_chunks=run.chunks,
            context_used=run.context(),
            metadata=ResponseMetadata(run.finish_metadata()),
            citations=build_citations(answer, run.chunks),
        )

    def answer_from(self, run: Run, chunks: Sequence[RetrievalResult]) -> Run:
        """`run` set up to answer from `chunks` as given (no rewrite, retrieval or rerank): for `stream(...,
        prepared=True)`."""
        run.queries = [run.question]
        run.chunks = list(chunks)
        run.metadata.update(
            llm=self.llm_name, embedding_model=self.parts.embedding_model.name, num_candidates=len(run.chunks)
        )
        return run

    async def stream(self, run: Run, *, prepared: bool = False) -> AsyncIterator[StreamEvent]:
        """Events `sources` -> `token`* (with `citation` as each `[n]` completes) -> `done`; on failure `error`.

        Closing the iterator early cancels the upstream LLM stream.
        """
        # Spans stay detached across yields (each step may run in another task); `use_span` attaches the root
        # only around `prepare`, so retrieval's spans and tasks are its children.
        with tracing.detached_span("mini.query", self._trace_attributes(run), enabled=self._tracing) as root:
            try:
                if not prepared:
                    with tracing.use_span(root):
                        await self.prepare(run)
                yield StreamEvent("sources", [c.as_source(n) for n, c in enumerate(run.chunks, start=1)])
                tracker = CitationStream(run.chunks)
                parts: list[str] = []
                since = time.perf_counter()
                before = run.usage
                with tracing.detached_span(
                    "mini.generate", {"mini.chunks": len(run.chunks)}, parent=root
                ) as span:
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
                run.metadata["answer_type"] = self.answer_type(run)
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

    async def _generate_stream(self, run: Run) -> AsyncIterator[str]:
        llm = self.parts.llm
        if llm is None or not run.chunks:
            answer, _ = await self.generate(run)
            for i, word in enumerate(answer.split(" ")):
                yield word if i == 0 else " " + word
            return
        stream = llm.stream(self._messages(run))
        try:
            async for delta in stream:
                if delta.usage is not None:
                    run.usage = run.usage + delta.usage
                if delta.text:
                    yield delta.text
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
