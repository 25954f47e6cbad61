"""Deterministic generated documents for ingestion tests and benchmarks (English-like prose, no downloads)."""

from __future__ import annotations

import random
from pathlib import Path

_PROSE = (
    "the council library budget river bridge ferry island harbour school garden market museum station "
    "water energy solar wind storm flood road tunnel park forest trail coast beach lighthouse tower "
    "village town city district region county province nation people families children students teachers "
    "workers farmers doctors nurses engineers builders planners visitors residents members volunteers "
    "approved proposed reviewed announced opened closed repaired replaced expanded reduced increased "
    "measured recorded reported published planned funded delayed completed started extended renewed "
    "new old large small public private local regional annual monthly weekly daily early late main "
    "north south east west central upper lower first second third final major minor average total "
    "plan report study survey project program service system network policy rule schedule meeting "
    "vote decision result change cost price rate level number share amount period season year month "
    "because although while after before during since until unless whether however therefore also "
    "about above across along among around behind below beside between beyond inside near outside"
)
_WORDS = _PROSE.split()


def document_text(index: int, chars: int = 1500, seed: int = 0) -> str:
    """About `chars` characters of paragraphs; every sentence carries a word unique to this document, so
    no two documents share a chunk (ingestion tests count chunks exactly)."""
    rng = random.Random(seed * 1_000_003 + index)
    tag = f"doc{index}x{seed}"
    paragraphs: list[str] = []
    length = 0
    while length < chars:
        words = [rng.choice(_WORDS) for _ in range(rng.randint(8, 18))]
        words.insert(rng.randrange(1, len(words)), tag)
        sentence = " ".join(words).capitalize() + "."
        if not paragraphs or rng.random() < 0.3:
            paragraphs.append(sentence)
        else:
            paragraphs[-1] += " " + sentence
        length += len(sentence) + 1
    return "\n\n".join(paragraphs)


def write_corpus(directory: Path, count: int, *, chars: int = 1500, seed: int = 0) -> list[Path]:
    """`count` text files doc00000.txt ... in `directory` (created if needed); returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = directory / f"doc{index:05d}.txt"
        path.write_text(document_text(index, chars, seed), encoding="utf-8")
        paths.append(path)
    return paths
