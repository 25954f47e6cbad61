"""mini-rag 0.1.3's `mini.store` (`VectorStore`, `MilvusConfig`, `filter_expr`) on Milvus Lite and LanceDB."""

from __future__ import annotations

import subprocess
import sys
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


def test_the_new_store_api_never_warns(tmp_path: Path) -> None:
    code = (
        "import mini\n"
        f"s = mini.VectorStore({str(tmp_path / 'lance')!r}, collection_name='docs')\n"
        "s.upsert([[1.0, 0.0]], ['hello'], [{'source': 'a'}])\n"
        "assert s.search([1.0, 0.0], top_k=1, filter={'source': 'a'})[0].text == 'hello'\n"
        "assert s.count() == 1; s.drop(); s.close()\n"
    )
    subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", code], check=True, timeout=120)
