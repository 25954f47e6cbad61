"""The small corpus both engines' keyword-search tests index: "quokka" is rare and twice in d0, "running" and
"runs" test stemming, d5 has no text at all."""

from __future__ import annotations

from typing import Any

CORPUS: list[tuple[str, str, dict[str, Any]]] = [
    ("d0", "The quokka is a small marsupial; a quokka smiles.", {"source": "animals.md", "year": 2020}),
    ("d1", "A quokka lives on Rottnest Island near Perth.", {"source": "travel.md", "year": 2021}),
    ("d2", "The council runs the recycling schedule every week.", {"source": "council.md", "year": 2022}),
    ("d3", "Running the parks: rules for dogs and bikes.", {"source": "parks.md", "year": 2023}),
    ("d4", "Budget figures for the island ferry service.", {"source": "travel.md", "year": 2024}),
    ("d5", "", {}),
]
