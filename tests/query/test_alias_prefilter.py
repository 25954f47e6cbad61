"""The alias prefilter: a metadata field holding a string or a list of aliases pulls a document's chunks into
the prefilter leg when the question names any alias, in any case and as whole words (mini.query.aliases).

Over the default embedded LanceDB store on disk, indexed through the simulated OpenAI-compatible provider;
the same prefilter over Milvus Lite and Qdrant local mode is in the store contract
(mini.testing.contracts.aliases, run by tests/stores/test_contracts.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from mini import AgenticRAG, EmbeddingModel, RetrievalConfig, VectorStore
from mini.errors import StoreError
from mini.query import aliases
from mini.query.retrieval import HybridRetriever, _prefilter_store, question_phrases
from mini.stores.base import Record
from tests.query.conftest import SIM_KEY

DOCS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "aot.md",
        "Attack on Titan follows Eren Yeager and the Survey Corps beyond the walls.",
        {"aliases": ["Attack on Titan", "AoT"]},
    ),
    (
        "naruto.md",
        "Naruto Uzumaki trains to become Hokage of the Hidden Leaf village.",
        {"aliases": ["Naruto", "Naruto Shippuden"], "lang": "ja"},
    ),
    ("acme.md", "The Acme Pro X ships with two batteries and a charger.", {"aliases": "Acme Pro X"}),
    ("garden.md", "The garden gate was painted green last spring by volunteers.", {}),
]


def embedding(sim: Any) -> EmbeddingModel:
    return EmbeddingModel("openai:sim-embed", base_url=sim.base_url, api_key=SIM_KEY, dimension=384)


def make_rag(sim: Any, store: VectorStore, **config: Any) -> AgenticRAG:
    retrieval = RetrievalConfig(**{"prefilter_field": "aliases", "use_reranking": False, **config})
    return AgenticRAG(store, embedding(sim), retrieval_config=retrieval)


async def index_docs(rag: AgenticRAG, docs: Sequence[tuple[str, str, dict[str, Any]]] = DOCS) -> None:
    report = await rag.index_texts_async(
        [text for _, text, _ in docs], sources=[s for s, _, _ in docs], metadata=[m for _, _, m in docs]
    )
    assert report.ok, report.failures


async def prefiltered(rag: AgenticRAG, question: str, **kwargs: Any) -> list[str]:
    """The sources of the prefilter leg's rows for `question` (in the leg's order)."""
    retriever = HybridRetriever(rag.vector_store, rag.embedding_model, rag.retrieval_config)
    top_k = kwargs.pop("top_k", 10)
    field = rag.retrieval_config.prefilter_field
    assert field is not None
    (ranking,) = await retriever._prefilter(question, field, top_k, kwargs.pop("filter", None))
    assert [hit.id for hit in ranking] == sorted(hit.id for hit in ranking)
    return [str(hit.metadata["source"]) for hit in ranking]


@pytest.fixture(autouse=True)
def no_time_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """The index's time-based limits (wait budget, rebuild throttle) would make results depend on how fast a
    loaded machine builds an index; tests that exercise them set them explicitly."""
    monkeypatch.setattr(aliases, "BUILD_WAIT_S", 600.0)
    monkeypatch.setattr(aliases, "THROTTLE_AFTER_S", float("inf"))


@pytest.fixture
async def rag(sim: Any, tmp_path: Path) -> AgenticRAG:
    rag = make_rag(sim, VectorStore(str(tmp_path / "s")))
    await index_docs(rag)
    return rag


# -- the example ---------------------------------------------------------------------------------------


async def test_a_document_with_aliases_is_found_by_any_alias_in_any_case_and_not_by_chaotic(
    rag: AgenticRAG,
) -> None:
    # The issue's example verbatim: aliases=["Attack on Titan", "AoT"]; "What is AoT about?", "what is aot
    # about" and "Attack on Titan's ending" all pull the document in; "aot" inside "chaotic" does not.
    for question in ("What is AoT about?", "what is aot about", "Attack on Titan's ending"):
        response = await rag.query_async(question)
        assert response.metadata["retrieval"]["legs"]["prefilter"]["hits"] == 1, question
        assert await prefiltered(rag, question) == ["aot.md"], question
        assert "aot.md" in [hit.metadata["source"] for hit in response.retrieved_chunks], question
    for question in ("Why is the plot so chaotic?", "chaotic"):
        response = await rag.query_async(question)
        assert response.metadata["retrieval"]["legs"]["prefilter"]["hits"] == 0, question
        assert await prefiltered(rag, question) == [], question


async def test_string_fields_keep_matching_and_now_in_any_case_but_only_whole_aliases(
    rag: AgenticRAG,
) -> None:
    assert await prefiltered(rag, "Does the Acme Pro X fit?") == ["acme.md"]  # the exact match of before
    assert await prefiltered(rag, "does the ACME pro x fit?") == ["acme.md"]
    assert await prefiltered(rag, "Is the Acme Pro any good?") == []  # part of an alias names nothing
    both = await prefiltered(rag, "Naruto or AoT?")
    assert sorted(both) == ["aot.md", "naruto.md"]
    assert await prefiltered(rag, "aot or naruto") == both  # in id order, whatever the question's
    assert await prefiltered(rag, "NARUTO SHIPPUDEN") == ["naruto.md"]


async def test_the_callers_filter_and_top_k_bound_the_leg(rag: AgenticRAG) -> None:
    assert await prefiltered(rag, "naruto or aot", filter={"lang": "ja"}) == ["naruto.md"]
    assert await prefiltered(rag, "naruto or aot", filter={"source": "acme.md"}) == []
    both = await prefiltered(rag, "naruto or aot")
    assert len(both) == 2
    assert await prefiltered(rag, "naruto or aot", top_k=1) == both[:1]  # the first id, every time


# -- normal form ----------------------------------------------------------------------------------------------


def test_aliases_and_questions_compare_casefolded_nfkc_words() -> None:
    assert aliases.alias_key("Attack on Titan's ending") == "attack on titan s ending"
    assert aliases.alias_key("  AoT. ") == "aot"
    assert aliases.alias_key("Straße") == aliases.alias_key("STRASSE") == "strasse"
    assert aliases.alias_key("Pok\u00e9mon") == aliases.alias_key("Poke\u0301mon")  # composed or not
    assert aliases.alias_keys(["AoT", "Attack  on  Titan", 3, None, ""]) == {"aot", "attack on titan"}
    assert aliases.alias_keys({"en": "AoT"}) == aliases.alias_keys(7) == set()
    records = [Record("b", [0.0], "", {"a": ["C++", "node.js"]}), Record("a", [0.0], "", {"a": "c++"})]
    index = aliases.AliasIndex.build(records, "a")
    assert index.match("C++ or Node.js?") == ["c++", "node.js"]
    assert index.ids(index.match("C++ or Node.js?")) == ["a", "b"]
    assert index.match("chaotic c+ nodejs") == []


# -- freshness and cost ---------------------------------------------------------------------------------------


class Recording(VectorStore):
    """A store that records its reads (and can hold or fail the read an alias index is built from)."""

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self.reads: list[tuple[str, Any]] = []
        self.fail_index_reads = False
        self.hold_index_reads: asyncio.Event | None = None

    async def count_async(self, filter: Mapping[str, Any] | None = None) -> int:
        self.reads.append(("count", filter))
        return await super().count_async(filter)

    async def get_async(
        self, ids: Sequence[str] | None = None, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> list[Record]:
        # The read an alias index is built from selects the rows having the field: {field: {"$ne": ...}}.
        index_read = ids is None and filter is not None and "$ne" in str(filter)
        self.reads.append(("index" if index_read else "ids" if ids is not None else "filter", filter))
        if index_read and self.hold_index_reads is not None:
            await asyncio.wait_for(self.hold_index_reads.wait(), timeout=30)
        if index_read and self.fail_index_reads:
            raise StoreError("the metadata scan failed")
        return await super().get_async(ids, filter, **kwargs)


async def test_a_question_reads_the_row_count_and_its_rows_by_id_not_the_whole_store(
    sim: Any, tmp_path: Path
) -> None:
    store = Recording(str(tmp_path / "s"))
    rag = make_rag(sim, store)
    await index_docs(rag)
    store.reads.clear()
    assert await prefiltered(rag, "What is AoT about?") == ["aot.md"]
    assert [kind for kind, _ in store.reads] == ["count", "index", "ids"]  # the first question builds
    store.reads.clear()
    for question in ("what is aot about", "Naruto?", "nothing to see"):
        await prefiltered(rag, question)
    # Later questions: one row count each, and an id lookup for those naming an alias.
    assert [kind for kind, _ in store.reads] == ["count", "ids", "count", "ids", "count"]


async def test_the_index_follows_writes_that_change_the_row_count(sim: Any, tmp_path: Path) -> None:
    store = Recording(str(tmp_path / "s"))
    rag = make_rag(sim, store)
    await index_docs(rag)
    assert await prefiltered(rag, "Is FMA finished?") == []
    await index_docs(
        rag, [("fma.md", "Edward Elric seeks the stone.", {"aliases": ["Fullmetal Alchemist", "FMA"]})]
    )
    assert await prefiltered(rag, "Is FMA finished?") == ["fma.md"]  # indexed, then asked at once
    assert (await rag.delete_documents_async(["fma.md"])).chunks == 1
    assert await prefiltered(rag, "Is FMA finished?") == []


async def test_aliases_changed_in_place_are_never_stale_matches_and_show_up_when_the_index_expires(
    sim: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = VectorStore(str(tmp_path / "s"))
    rag = make_rag(sim, store)
    await index_docs(rag)
    assert await prefiltered(rag, "AoT?") == ["aot.md"]
    (row,) = await store.get_async(filter={"source": "aot.md"}, include_vectors=True)
    # Same id, same row count, other aliases: the old alias stops matching at once (rows are re-checked)...
    await store.upsert_async([row.vector], [row.text], [{**row.metadata, "aliases": ["Shingeki"]}], [row.id])
    assert await prefiltered(rag, "AoT?") == []
    # ...and the new one is found once the index expires (or is forgotten).
    monkeypatch.setattr(aliases, "MAX_AGE_S", 0.0)
    assert await prefiltered(rag, "Shingeki no Kyojin") == ["aot.md"]
    await store.upsert_async([row.vector], [row.text], [{**row.metadata, "aliases": ["SnK"]}], [row.id])
    monkeypatch.setattr(aliases, "MAX_AGE_S", 3600.0)
    aliases.forget(store)
    assert await prefiltered(rag, "snk") == ["aot.md"]


async def test_many_matching_rows_give_the_first_top_k_ids_every_time(sim: Any, tmp_path: Path) -> None:
    store = VectorStore(str(tmp_path / "s"))
    await store.upsert_async(
        [[1.0, float(i), 0.0] for i in range(30)],
        [f"chunk {i}" for i in range(30)],
        [{"aliases": ["Big Corp"], "source": f"big{i:02}.md"} for i in range(30)],
        [f"id{i:02}" for i in range(30)],
    )
    rag = make_rag(sim, store)
    first = await prefiltered(rag, "What does big corp sell?", top_k=5)
    assert first == [f"big{i:02}.md" for i in range(5)]
    assert await prefiltered(rag, "BIG CORP", top_k=5) == first
    found, how = await _prefilter_store(store, "big corp", ["big corp"], "aliases", 5, None)
    assert how == "aliases" and [r.id for r in found] == [f"id{i:02}" for i in range(5)]  # top_k per store
    odd = [f"big{i:02}.md" for i in range(1, 30, 2)][:5]
    assert await prefiltered(rag, "big corp", top_k=5, filter={"source": {"$in": odd}}) == odd


async def test_several_stores_each_give_at_most_top_k_merged_by_id(sim: Any, tmp_path: Path) -> None:
    stores = [VectorStore(str(tmp_path / name)) for name in ("uploads", "main")]
    for n, store in enumerate(stores):
        await store.upsert_async(
            [[1.0, float(i)] for i in range(3)],
            ["t"] * 3,
            [{"aliases": "AoT", "source": f"{n}-{i}.md"} for i in range(3)],
            [f"{'ba'[n]}{i}" for i in range(3)],
        )
    retriever = HybridRetriever(stores, embedding(sim), RetrievalConfig(prefilter_field="aliases"))
    (ranking,) = await retriever._prefilter("aot", "aliases", 4, None)
    assert [hit.id for hit in ranking] == ["a0", "a1", "a2", "b0"]  # uploads: b*, main: a*
    assert {hit.score for hit in ranking} == {1.0}


# -- bounds and failures --------------------------------------------------------------------------------------


async def test_past_the_row_limit_the_exact_prefilter_answers_with_a_warning(
    rag: AgenticRAG, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(aliases, "MAX_INDEXED_ROWS", 2)
    with caplog.at_level(logging.WARNING, logger="mini.query"):
        assert await prefiltered(rag, "Does the Acme Pro X fit?") == ["acme.md"]  # exact: as written
    assert "more than 2 rows" in caplog.text
    assert await prefiltered(rag, "What is AoT about?") == []  # a list value never equals a phrase
    assert await prefiltered(rag, "does the ACME PRO X fit?") == []
    (found, how) = await _prefilter_store(
        rag.vector_store, "Acme Pro X", question_phrases("Acme Pro X"), "aliases", 5, None
    )
    assert how == "exact" and [r.metadata["source"] for r in found] == ["acme.md"]


async def test_a_slow_first_build_does_not_hold_the_question(
    sim: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Recording(str(tmp_path / "s"))
    rag = make_rag(sim, store)
    await index_docs(rag)
    store.hold_index_reads = asyncio.Event()
    monkeypatch.setattr(aliases, "BUILD_WAIT_S", 0.05)
    phrases = question_phrases("Acme Pro X or AoT")
    found, how = await _prefilter_store(store, "Acme Pro X or AoT", phrases, "aliases", 5, None)
    assert how == "exact" and [r.metadata["source"] for r in found] == ["acme.md"]
    store.hold_index_reads.set()  # the build (still running) finishes; a question waits for it
    monkeypatch.setattr(aliases, "BUILD_WAIT_S", 60.0)
    found, how = await _prefilter_store(store, "Acme Pro X or AoT", phrases, "aliases", 5, None)
    assert how == "aliases" and sorted(r.metadata["source"] for r in found) == ["acme.md", "aot.md"]
    assert [kind for kind, _ in store.reads].count("index") == 1  # one build served both questions


async def test_a_failed_build_degrades_the_leg_and_a_failed_rebuild_keeps_the_old_index(
    sim: Any, tmp_path: Path
) -> None:
    store = Recording(str(tmp_path / "s"))
    rag = make_rag(sim, store)
    await index_docs(rag)
    store.fail_index_reads = True
    response = await rag.query_async("What is AoT about?")
    assert response.retrieved_chunks  # the question is answered from the other legs
    assert "error" in response.metadata["retrieval"]["legs"]["prefilter"]
    assert any("prefilter retrieval failed" in w for w in response.metadata["warnings"])
    store.fail_index_reads = False
    assert await prefiltered(rag, "What is AoT about?") == ["aot.md"]
    await index_docs(rag, [("more.md", "More text.", {"aliases": ["More"]})])  # the row count changes
    store.fail_index_reads = True
    assert await prefiltered(rag, "What is AoT about?") == ["aot.md"]  # the old index answers
