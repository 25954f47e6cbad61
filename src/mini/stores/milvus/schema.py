"""The Milvus collection layout Mini RAG creates: its schema (fields, the BM25 function, text analysis) and its
indexes (what Milvus Lite accepts, what servers and Zilliz Cloud get). Pure construction: no I/O; pymilvus is
imported by the callers' `load_pymilvus()` first."""

from __future__ import annotations

from typing import Any

from mini.stores.milvus.expr import HAS_SOURCE_FIELD, ID_FIELD, KINDS_FIELD, METADATA_FIELD, SOURCE_FIELD
from mini.stores.milvus.rows import MAX_ID_BYTES, MAX_VARCHAR_BYTES, SPARSE_FIELD, TEXT_FIELD, VECTOR_FIELD
from mini.stores.sparse import ENGLISH_STOP_WORDS

# Keyword search: the BM25 function fills SPARSE_FIELD from `text`; the index scores with BM25 (k1 1.2, b 0.75).
_BM25_FUNCTION = "text_bm25"
# English analysis: the standard tokenizer, lowercase, our stop words (an explicit list, which Milvus Lite
# also reads; it does not know "_english_") and the English stemmer. Milvus Lite 3.2 implements the tokenizer,
# lowercasing and stop words and ignores the stemmer (it has no stemming): on Lite "runs" does not find
# "running"; on servers it does.
_ANALYZER: dict[str, Any] = {
    "tokenizer": "standard",
    "filter": [
        "lowercase",
        {"type": "stop", "stop_words": sorted(ENGLISH_STOP_WORDS)},
        {"type": "stemmer", "language": "english"},
    ],
}
_BM25_PARAMS = {"bm25_k1": 1.2, "bm25_b": 0.75}


def collection_schema(dimension: int) -> Any:
    """The `CollectionSchema` of a new collection of `dimension`-sized vectors."""
    from pymilvus import CollectionSchema, DataType, FieldSchema, Function, FunctionType

    return CollectionSchema(
        [
            FieldSchema(ID_FIELD, DataType.VARCHAR, is_primary=True, auto_id=False, max_length=MAX_ID_BYTES),
            FieldSchema(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dimension),
            FieldSchema(
                TEXT_FIELD,
                DataType.VARCHAR,
                max_length=MAX_VARCHAR_BYTES,
                enable_analyzer=True,
                analyzer_params=_ANALYZER,
            ),
            FieldSchema(SOURCE_FIELD, DataType.VARCHAR, max_length=MAX_VARCHAR_BYTES),
            FieldSchema(HAS_SOURCE_FIELD, DataType.BOOL),
            FieldSchema(METADATA_FIELD, DataType.JSON),
            FieldSchema(KINDS_FIELD, DataType.JSON),
            FieldSchema(SPARSE_FIELD, DataType.SPARSE_FLOAT_VECTOR),
        ],
        functions=[
            Function(
                name=_BM25_FUNCTION,
                function_type=FunctionType.BM25,
                input_field_names=[TEXT_FIELD],
                output_field_names=[SPARSE_FIELD],
            )
        ],
        enable_dynamic_field=False,
    )


def index_params(vector_index: str, *, lite: bool) -> list[Any]:
    """The dense index (`vector_index`, COSINE) and the sparse BM25 index, one `IndexParams` each (created one
    request at a time: see `MilvusBackend._create_index`)."""
    from pymilvus import MilvusClient

    dense = MilvusClient.prepare_index_params()
    dense.add_index(VECTOR_FIELD, index_type=vector_index, metric_type="COSINE")
    sparse = MilvusClient.prepare_index_params()
    if lite:  # Lite accepts only this sparse index, and defaults k1 to 1.5
        sparse.add_index(
            SPARSE_FIELD, index_type="SPARSE_INVERTED_INDEX", metric_type="BM25", params=_BM25_PARAMS
        )
    else:  # what Zilliz Cloud requires; servers default to k1 1.2, b 0.75
        sparse.add_index(SPARSE_FIELD, index_type="AUTOINDEX", metric_type="BM25")
    return [dense, sparse]
