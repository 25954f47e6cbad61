"""The store contract: what every `VectorStoreBackend` must do, as async checks any test suite can run.

    from mini.testing.contracts import CONTRACT_CHECKS

    @pytest.mark.parametrize("check", CONTRACT_CHECKS, ids=lambda c: c.__name__)
    async def test_contract(check, tmp_path):
        await check(lambda name="c", dimension=None: MyBackend(str(tmp_path), collection_name=name,
                                                               dimension=dimension, token=None))

A factory makes a backend for a collection name; calling it again with the same name must reach the same data
(that is how persistence is checked). Filters follow `mini.stores.filters.matches`, for keys that hold one JSON
type and for keys mixing strings, numbers, booleans, nulls and objects. String ranges are the one optional
feature: a backend that cannot express them raises `UnsupportedFilterError` instead of answering wrongly.
The alias prefilter (`mini.query.aliases`) reads through the same API; its checks run it over the backend.

Not in `CONTRACT_CHECKS`, run on their own: `check_keyword_search` (it returns at once for a backend whose
`supports_hybrid` is False), `check_list_values_never_equal_scalars` (Qdrant matches lists element-wise, a
documented difference), and `check_a_collection_dropped_elsewhere_reads_empty`, which LanceDB and Milvus fail
today (an open object keeps a stale handle).
`SLOW_CHECKS` are the ones that write thousands of rows.
"""

from __future__ import annotations

from collections.abc import Sequence

from mini.testing.contracts._common import DIM, BackendFactory, Check, ids_for, rows, unit
from mini.testing.contracts.aliases import (
    ALIAS_QUESTIONS,
    ALIAS_ROWS,
    check_rows_having_a_key_are_found_whatever_their_value,
    check_the_alias_prefilter_matches_aliases_in_any_case_as_whole_words,
)
from mini.testing.contracts.filtering import (
    ADVERSARIAL,
    FILTER_ROWS,
    FILTERS,
    MIXED_FILTERS,
    MIXED_ROWS,
    STRING_RANGES,
    check_adversarial_values_match_only_their_own_rows,
    check_booleans_and_numbers_are_different_types,
    check_filters_follow_the_reference_semantics,
    check_list_values_never_equal_scalars,
    check_mixed_types_under_one_key_follow_the_reference,
    check_numeric_ranges_skip_booleans,
    check_string_ranges_are_right_or_refused,
)
from mini.testing.contracts.keyword import KEYWORD_ROWS, check_keyword_search
from mini.testing.contracts.reads import (
    check_64_concurrent_searches_keep_the_loop_responsive,
    check_concurrent_searches_each_get_their_own_answer,
    check_count_get_and_large_id_lists,
    check_search_many_equals_single_searches,
)
from mini.testing.contracts.writes import (
    check_a_collection_dropped_elsewhere_reads_empty,
    check_bad_input_is_rejected_before_writing,
    check_concurrent_first_writes_do_not_fail,
    check_concurrent_replaces_of_a_scope_leave_one_version,
    check_concurrent_writes_of_the_same_ids_store_each_once,
    check_data_persists_across_backend_objects,
    check_delete_by_ids_and_filter_returns_counts,
    check_dimension_mismatches_raise,
    check_drop_then_recreate_with_another_dimension,
    check_empty_collection_reads_are_empty,
    check_insert_refuses_existing_ids,
    check_metadata_and_text_round_trip,
    check_replace_swaps_a_scope,
    check_search_is_best_first_with_cosine_scores,
    check_upsert_is_idempotent_and_updates,
)

CONTRACT_CHECKS: Sequence[Check] = (
    check_empty_collection_reads_are_empty,
    check_search_is_best_first_with_cosine_scores,
    check_metadata_and_text_round_trip,
    check_upsert_is_idempotent_and_updates,
    check_insert_refuses_existing_ids,
    check_bad_input_is_rejected_before_writing,
    check_search_many_equals_single_searches,
    check_concurrent_searches_each_get_their_own_answer,
    check_filters_follow_the_reference_semantics,
    check_string_ranges_are_right_or_refused,
    check_mixed_types_under_one_key_follow_the_reference,
    check_adversarial_values_match_only_their_own_rows,
    check_booleans_and_numbers_are_different_types,
    check_numeric_ranges_skip_booleans,
    check_rows_having_a_key_are_found_whatever_their_value,
    check_the_alias_prefilter_matches_aliases_in_any_case_as_whole_words,
    check_delete_by_ids_and_filter_returns_counts,
    check_count_get_and_large_id_lists,
    check_replace_swaps_a_scope,
    check_data_persists_across_backend_objects,
    check_dimension_mismatches_raise,
    check_drop_then_recreate_with_another_dimension,
    check_concurrent_first_writes_do_not_fail,
    check_concurrent_replaces_of_a_scope_leave_one_version,
    check_concurrent_writes_of_the_same_ids_store_each_once,
    check_64_concurrent_searches_keep_the_loop_responsive,
)

SLOW_CHECKS: frozenset[Check] = frozenset(
    {check_count_get_and_large_id_lists, check_64_concurrent_searches_keep_the_loop_responsive}
)

__all__ = [
    "ADVERSARIAL",
    "ALIAS_QUESTIONS",
    "ALIAS_ROWS",
    "CONTRACT_CHECKS",
    "DIM",
    "FILTERS",
    "FILTER_ROWS",
    "KEYWORD_ROWS",
    "MIXED_FILTERS",
    "MIXED_ROWS",
    "SLOW_CHECKS",
    "STRING_RANGES",
    "BackendFactory",
    "Check",
    "check_a_collection_dropped_elsewhere_reads_empty",
    "check_keyword_search",
    "check_list_values_never_equal_scalars",
    "check_numeric_ranges_skip_booleans",
    "ids_for",
    "rows",
    "unit",
]
