"""`mini.integrations.langchain.MiniRetriever` inside a real LCEL chain (langchain-core), offline."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import ParrotFakeChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnablePassthrough

from mini import AgenticRAG
from mini.integrations.langchain import MiniRetriever
from tests.integrations.conftest import GLASS_ANSWER, GLASS_QUESTION


def format_docs(docs: list[Document]) -> str:
    return "\n\n".join(f"[{doc.metadata['source']}] {doc.page_content}" for doc in docs)


def rag_chain(retriever: MiniRetriever) -> Runnable[str, str]:
    """The usual RAG chain; the parrot model answers with the prompt it got, so the output shows what the
    retriever put into it."""
    prompt = ChatPromptTemplate.from_messages([("human", "Context:\n{context}\n\nQuestion: {question}")])
    return (
        {"context": retriever | format_docs, "question": RunnablePassthrough()}
        | prompt
        | ParrotFakeChatModel()
        | StrOutputParser()
    )


async def test_chain_ainvoke_awaits_search_async_on_the_callers_loop(
    rag: AgenticRAG, search_calls: list[Any]
) -> None:
    answer = await rag_chain(MiniRetriever(rag=rag, top_k=1)).ainvoke(GLASS_QUESTION)
    assert f"[recycling.md] Glass is collected for recycling on the {GLASS_ANSWER}" in answer
    assert "library.md" not in answer and "parks.md" not in answer  # top_k=1 reached the search
    # LangChain's default async path would run the sync one in an executor thread: this one awaited the search
    # on the caller's own loop and thread.
    assert search_calls == [(asyncio.get_running_loop(), threading.current_thread())]


def test_chain_invoke_and_documents_carry_id_score_and_metadata(rag: AgenticRAG) -> None:
    answer = rag_chain(MiniRetriever(rag=rag, top_k=1)).invoke(GLASS_QUESTION)
    assert f"[recycling.md] Glass is collected for recycling on the {GLASS_ANSWER}" in answer

    docs = MiniRetriever(rag=rag, top_k=2, mode="dense").invoke(GLASS_QUESTION)
    hits = rag.search(GLASS_QUESTION, top_k=2, mode="dense")
    assert [doc.page_content for doc in docs] == [hit.text for hit in hits]
    assert [doc.metadata for doc in docs] == [
        {**hit.metadata, "id": hit.id, "score": hit.score} for hit in hits
    ]
    assert docs[0].metadata["source"] == "recycling.md"
