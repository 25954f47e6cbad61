"""Store contract checks for the alias prefilter (`mini.query.aliases`): the reads its index is built from,
and the prefilter itself, so every engine answers the same questions with the same rows."""

from __future__ import annotations

from typing import Any

from mini.stores.base import Record, VectorStore
from mini.stores.filters import matches, parse_filter
from mini.testing.contracts._common import BackendFactory, ids_for, parsed, unit

# The prefilter field holding every kind of value: lists of strings (aliases), a string, a list mixing types,
# and values that name nothing (a number, a null, an object, an empty string); one row lacks it.
ALIAS_ROWS: list[dict[str, Any]] = [
    {"aliases": ["Attack on Titan", "AoT"], "lang": "en", "source": "aot.md"},
    {"aliases": "Naruto", "lang": "ja", "source": "naruto.md"},
    {"aliases": ["Naruto Shippuden", 3, None], "lang": "en", "source": "shippuden.md"},
    {"aliases": ["Pokémon", "STRASSE"], "lang": "de"},
    {"aliases": 7},
    {"aliases": None},
    {"aliases": {"en": "AoT"}},
    {"aliases": ""},
    {"other": "AoT", "lang": "en"},
    {},
]

# Question -> the rows the alias prefilter returns (by index in ALIAS_ROWS), without and with {"lang": "en"}.
ALIAS_QUESTIONS: list[tuple[str, set[int], set[int]]] = [
    ("What is AoT about?", {0}, {0}),
    ("what is aot about", {0}, {0}),
    ("Attack on Titan's ending", {0}, {0}),
    ("ATTACK ON TITAN", {0}, {0}),
    ("Why is the plot so chaotic?", set(), set()),
    ("Attack on", set(), set()),
    ("naruto or aot?", {0, 1}, {0}),
    ("Is Naruto Shippuden longer?", {1, 2}, {2}),
    ("pokémon in der Straße", {3}, set()),
    ("7 none", set(), set()),
]


async def check_rows_having_a_key_are_found_whatever_their_value(make: BackendFactory) -> None:
    """`{key: {"$ne": <a value no row holds>}}` selects exactly the rows that have the key, list values
    included (how the alias index finds the rows to read), and rows by id AND a filter are rows matching
    both (how it fetches a question's rows)."""
    backend = make("haskey")
    await backend.insert([Record(f"a{i}", unit(i), f"x{i}", meta) for i, meta in enumerate(ALIAS_ROWS)])
    spec = {"aliases": {"$ne": "\x1fno row holds this\x1f"}}
    node = parsed(spec)
    expected = {f"a{i}" for i, meta in enumerate(ALIAS_ROWS) if matches(node, meta)}
    assert expected == {f"a{i}" for i in range(8)}
    assert await ids_for(backend, spec) == expected
    assert await backend.count(node) == len(expected)
    assert {r.id for r in await backend.get(filter=node)} == expected
    lists = {r.id: r.metadata["aliases"] for r in await backend.get(ids=["a0", "a2"])}
    assert lists == {"a0": ALIAS_ROWS[0]["aliases"], "a2": ALIAS_ROWS[2]["aliases"]}
    english = parse_filter({"lang": "en"})
    got = await backend.get(ids=["a0", "a1", "a2", "a8", "nope"], filter=english)
    assert {r.id for r in got} == {"a0", "a2", "a8"}


async def check_the_alias_prefilter_matches_aliases_in_any_case_as_whole_words(make: BackendFactory) -> None:
    """The alias prefilter (index, question matching, fetch) over this backend returns the expected rows."""
    from mini.query import aliases

    backend = make("aliases")
    await backend.insert([Record(f"a{i}", unit(i), f"x{i}", meta) for i, meta in enumerate(ALIAS_ROWS)])
    store = VectorStore(backend=backend)
    index = await aliases.lookup(store, "aliases", wait=float("inf"))  # however slow the engine builds it
    assert index is not None
    for question, anywhere, english in ALIAS_QUESTIONS:
        keys = index.match(question)
        for spec, expected in ((None, anywhere), ({"lang": "en"}, english)):
            found = await aliases.fetch(store, index, keys, "aliases", 10, spec)
            assert [r.id for r in found] == sorted(f"a{i}" for i in expected), (question, spec)
    # At most top_k rows, the first ids.
    both = index.match("aot and naruto")
    assert [r.id for r in await aliases.fetch(store, index, both, "aliases", 1, None)] == ["a0"]
