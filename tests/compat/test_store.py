"""mini-rag 0.1.3's `mini.store` (`VectorStore`, `MilvusConfig`, `filter_expr`) on Milvus Lite and LanceDB."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import mini
from mini.errors import InvalidInputError, StoreError, UnsupportedFilterError
from mini.store import MilvusConfig, VectorStore, translate_filter_expr
from tests.compat._fresh import fresh_warnings  # noqa: F401  (autouse fixture)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the 0.1.3 names warn by design

ROWS: dict[str, Any] = {
    "embeddings": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
    "texts": ["Budget for education", "Budget for roads", "Research agenda"],
    "metadata": [
        {"source": "doc1.pdf", "page": 1, "year": 2024, "category": "research"},
        {"source": "doc1.pdf", "page": 2, "year": 2023},
        {"source": "doc2.pdf", "page": 1, "year": 2024, "category": "other"},
    ],
}


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[VectorStore]:
    store = VectorStore(uri=str(tmp_path / "milvus_demo.db"), token="", collection_name="docs", dimension=3)
    yield store
    store.close()


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('metadata["source"] == "doc1.pdf"', {"source": "doc1.pdf"}),
        ("metadata['page'] == 2", {"page": 2}),
        ('metadata["score"] == -0.5', {"score": -0.5}),
        ('metadata["draft"] == true', {"draft": True}),
        ('metadata["q"] == "say \\"hi\\""', {"q": 'say "hi"'}),
        (
            'metadata["year"] == 2024 and metadata["category"] == "research"',
            {"$and": [{"year": 2024}, {"category": "research"}]},
        ),
    ],
)
def test_the_documented_filter_expr_forms_translate_to_filter_dicts(expr: str, expected: Any) -> None:
    assert translate_filter_expr(expr) == expected


@pytest.mark.parametrize(
    "expr",
    [
        'metadata["year"] > 2020',
        'metadata["a"] == 1 or metadata["b"] == 2',
        'source == "a.pdf"',
        'metadata["a"] == 1 and',
        'metadata["a"] in [1, 2]',
        'metadata["a"] == 1; drop',
    ],
)
def test_other_filter_expr_forms_raise_naming_the_supported_ones(expr: str) -> None:
    with pytest.raises(UnsupportedFilterError, match=r'metadata\["key"\] == value'):
        translate_filter_expr(expr)


def test_reads_of_a_milvus_lite_path_that_does_not_exist_are_empty_and_create_nothing(tmp_path: Path) -> None:
    path = tmp_path / "not_yet" / "milvus_demo.db"
    store = VectorStore(uri=str(path), token="", collection_name="docs", dimension=3)
    assert store.count() == 0
    assert store.search(query_embedding=[1.0, 0.0, 0.0], top_k=3) == []
    assert store.search([1.0, 0.0, 0.0], filter_expr='metadata["year"] >= 2000') == []
    assert store.get() == [] and store.keyword_search("budget") == []
    assert store.delete('metadata["page"] == 1') == 0
    store.drop_collection()
    assert not path.exists() and not path.parent.exists()


def test_insert_search_count_on_milvus_lite_in_the_0_1_3_shapes(lite: VectorStore) -> None:
    ids = lite.insert(embeddings=ROWS["embeddings"], texts=ROWS["texts"], metadata=ROWS["metadata"])
    assert len(ids) == 3 and lite.count() == 3
    again = lite.insert(
        embeddings=ROWS["embeddings"][:1], texts=ROWS["texts"][:1]
    )  # 0.1.3: auto ids, new rows
    assert again[0] not in ids and lite.count() == 4
    results = lite.search(query_embedding=[1.0, 0.0, 0.0], top_k=2)
    assert [sorted(r) for r in results] == [["distance", "id", "metadata", "score", "text"]] * 2
    assert results[0]["text"] == "Budget for education" and results[0]["score"] == pytest.approx(1.0)
    assert lite.search([1.0, 0.0, 0.0], top_k=1, output_fields=["text"])[0].keys() == {
        "id",
        "score",
        "distance",
        "text",
    }


def test_filter_expr_is_passed_through_to_milvus_as_written(lite: VectorStore) -> None:
    lite.insert(embeddings=ROWS["embeddings"], texts=ROWS["texts"], metadata=ROWS["metadata"])
    both = 'metadata["year"] == 2024 and metadata["category"] == "research"'
    assert [r["text"] for r in lite.search([0.0, 0.0, 1.0], top_k=5, filter_expr=both)] == [
        "Budget for education"
    ]
    # Beyond 0.1.3's documented forms: any Milvus expression (trusted input only).
    newer = lite.search(
        [1.0, 0.0, 0.0], top_k=5, filter_expr='metadata["page"] >= 2 or text like "Research%"'
    )
    assert sorted(r["text"] for r in newer) == ["Budget for roads", "Research agenda"]
    assert lite.count() == 3
    with pytest.raises(StoreError):
        lite.search([1.0, 0.0, 0.0], filter_expr="metadata[ ==")
    assert lite.delete('metadata["source"] == "doc1.pdf"') == 2 and lite.count() == 1


def test_filter_expr_on_lancedb_is_translated_or_refused(tmp_path: Path) -> None:
    store = VectorStore(uri=str(tmp_path / "lance"), collection_name="docs")
    store.insert(embeddings=ROWS["embeddings"], texts=ROWS["texts"], metadata=ROWS["metadata"])
    both = 'metadata["year"] == 2024 and metadata["category"] == "research"'
    assert [r["text"] for r in store.search([0.0, 0.0, 1.0], top_k=5, filter_expr=both)] == [
        "Budget for education"
    ]
    with pytest.raises(UnsupportedFilterError, match="Milvus store"):
        store.search([1.0, 0.0, 0.0], filter_expr='metadata["page"] >= 2')
    with pytest.raises(InvalidInputError, match="not both"):
        store.search([1.0, 0.0, 0.0], filter_expr=both, filter={"page": 1})
    assert store.delete('metadata["source"] == "doc1.pdf"') == 2 and store.count() == 1
    hybrid = store.hybrid_search("research agenda", [0.0, 0.0, 1.0], top_k=1)
    assert [r["text"] for r in hybrid] == ["Research agenda"]


def test_config_and_environment_choose_the_store(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("MILVUS_URI", str(tmp_path / "from_env"))
    monkeypatch.setenv("MILVUS_TOKEN", "")
    store = VectorStore(
        uri=None, token=None, collection_name="docs", dimension=3
    )  # os.getenv(...) unset: None
    assert store.uri == str(tmp_path / "from_env") and store.collection_name == "docs"
    config = MilvusConfig(
        uri=str(tmp_path / "cfg"), token="t", collection_name="kb", dimension=3, metric_type="L2"
    )
    from_config = VectorStore(config=config)
    assert (from_config.uri, from_config.collection_name, from_config.dimension) == (
        str(tmp_path / "cfg"),
        "kb",
        3,
    )
    assert isinstance(from_config, mini.VectorStore)
    with pytest.raises(mini.errors.ConfigurationError, match="metric_type"):
        VectorStore(uri=str(tmp_path / "x"), metric_type="HAMMING")


def test_renamed_store_methods_warn_once_and_still_work(tmp_path: Path) -> None:
    store = VectorStore(uri=str(tmp_path / "lance"), collection_name="docs")
    store.insert(embeddings=ROWS["embeddings"], texts=ROWS["texts"], metadata=ROWS["metadata"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store.drop_collection()
        store.drop_collection()
        store.disconnect()
    assert store.count() == 0
    messages = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert len(messages) == 2 and "VectorStore.drop()" in messages[0] and "VectorStore.close()" in messages[1]
    assert all(w.filename == __file__ for w in caught)


def test_the_top_level_names_take_0_1_3_keywords_too(tmp_path: Path) -> None:
    """0.1.3 exported its store and embedding model at the top level, where the new classes are now: a keyword
    only 0.1.3 had builds the 0.1.3 class (which warns); `search(filter_expr=...)` answers in 0.1.3's dicts."""
    with pytest.warns(DeprecationWarning, match="mini.store.VectorStore"):
        old = mini.VectorStore(uri=str(tmp_path / "old"), collection_name="docs", metric_type="IP")
    assert type(old) is VectorStore
    with pytest.warns(DeprecationWarning, match="mini.embedding.EmbeddingModel"):
        model = mini.EmbeddingModel(api_key="k", model="text-embedding-3-small", dimensions=64)
    assert type(model).__module__ == "mini.embedding" and model.config.dimensions == 64
    new = mini.VectorStore(str(tmp_path / "new"), collection_name="docs")
    assert type(new) is mini.VectorStore
    new.upsert(ROWS["embeddings"], ROWS["texts"], ROWS["metadata"])
    with pytest.warns(DeprecationWarning, match=r"filter=\{"):
        rows = new.search(query_embedding=[0.0, 0.0, 1.0], top_k=5, filter_expr='metadata["year"] == 2023')
    assert rows == [
        {
            "id": rows[0]["id"],
            "score": rows[0]["score"],
            "distance": rows[0]["score"],
            "text": "Budget for roads",
            "metadata": ROWS["metadata"][1],
        }
    ]
