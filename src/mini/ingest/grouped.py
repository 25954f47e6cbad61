"""Reading files in groups: consecutive files share one worker-thread hop (read, fingerprint, parse, chunk).

Why: with small files, two thread hops per file (each waiting for the GIL behind the event loop) capped reading
at ~1,300 files/s on 2 cores.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mini.ingest import chunking, loaders, state
from mini.ingest.units import Unit, parse_and_chunk

if TYPE_CHECKING:
    from mini.ingest.limits import ParseLimits
    from mini.types import Document

# Files per thread hop, at most, and the chunk text one hop may hold before it stops early (large files: one
# per hop).
GROUP_FILES = 32
GROUP_CHARS = 1 << 20


def group_size(files: int, load_concurrency: int, max_chunks_in_flight: int) -> int:
    """Files per hop: small groups when there are few files (they still spread over the `load_concurrency`
    workers) or a small chunk budget (what the workers hold beyond the budget stays a small part of it)."""
    spread = 4 * load_concurrency
    return max(1, min(GROUP_FILES, files // spread, max_chunks_in_flight // spread))


@dataclass(slots=True)
class FileOutcome:
    """What reading one file of a group found: unchanged (skip it), its chunks, or the error it raised."""

    unchanged: bool = False
    encoding: str | None = None
    error: Exception | None = None


def read_files(
    units: Sequence[Unit],
    *,
    fingerprint: Callable[[str], str],
    parse_limits: ParseLimits | None,
    chunk_tokens: int,
    overlap_tokens: int,
    tokenizer: chunking.Tokenizer | None,
    metadata: Mapping[str, Any] | None,
    max_chars: int,
) -> tuple[list[FileOutcome], float, float]:
    """Read, fingerprint and (unless unchanged: `unit.stored` has its fingerprint) parse and chunk file units in
    order, in one worker-thread hop; stops early once `max_chars` of chunk text is held (at least one file).

    Sets `unit.fingerprint` and `unit.chunks`. Returns the outcomes of the units done (a prefix of `units`) and
    the seconds spent reading and parsing. Blocking: run it in a worker thread.
    """
    outcomes: list[FileOutcome] = []
    read_s = parse_s = 0.0
    held = 0
    for unit in units:
        if held >= max_chars:
            break
        assert unit.path is not None
        outcome = FileOutcome()
        outcomes.append(outcome)
        started = time.perf_counter()
        try:
            file_type = loaders.file_type_of(unit.path)
            data = loaders.read_file(unit.path)
            unit.fingerprint = fingerprint(state.digest(data))
            read_s += (split := time.perf_counter()) - started
            if unit.stored is not None and unit.stored.fingerprint == unit.fingerprint:
                outcome.unchanged = True
                continue
            held_bytes = [data]  # the parser gets the only reference: the bytes go once decoded
            del data
            unit.chunks, outcome.encoding = parse_and_chunk(
                functools.partial(
                    _parse_held, unit.origin, held_bytes, file_type, unit.path.name, parse_limits
                ),
                metadata=metadata,
                chunk_tokens=chunk_tokens,
                overlap_tokens=overlap_tokens,
                tokenizer=tokenizer,
            )
            parse_s += time.perf_counter() - split
            held += sum(len(chunk.text) for chunk in unit.chunks)
        except Exception as exc:  # one bad file fails alone (the caller reports it)
            outcome.error = exc
    return outcomes, read_s, parse_s


def _parse_held(
    origin: str, held: list[bytes], file_type: str, filename: str, limits: ParseLimits | None
) -> list[Document]:
    return loaders.parse_bytes(origin, held.pop(), file_type, filename=filename, limits=limits)
