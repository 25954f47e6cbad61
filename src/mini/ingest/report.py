"""What an ingestion run reports: per-item outcomes, counts, timings, and live progress snapshots."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mini.errors import DocumentError


@dataclass(frozen=True, slots=True)
class IngestIssue:
    """A file, URL or document source that failed (`failures`) or was indexed with a caveat (`warnings`)."""

    path: str
    reason: str
    error_type: str = ""


@dataclass
class IngestReport:
    """What an ingestion run did. Every item ends in exactly one of added/updated/skipped/failed/pruned.

    "Files" are the units of ingestion: a file, a URL, or in-memory documents sharing a source.
    - skipped: unchanged since it was last indexed (no parsing, no embedding), or empty (with a warning), or
      found at commit time already stored in this exact version by a concurrent ingestion (then it was parsed
      and embedded, but not written a second time).
    - chunks_added / chunks_removed: rows that appeared / disappeared; chunks_unchanged: rows kept as they were.
    - chunks_embedded / embedding_requests: texts sent to the embedding model and the batches they went in;
      cache_hits: chunks whose vector was reused (repeated text, or an unchanged chunk of an edited file).
    - timings_ms: "total" is wall time; the stages (discover, read, parse, embed, store) are summed over
      concurrent work, so together they can exceed the total.
    """

    files_seen: int = 0
    files_added: int = 0
    files_updated: int = 0
    files_skipped: int = 0
    files_failed: int = 0
    files_pruned: int = 0
    chunks_added: int = 0
    chunks_removed: int = 0
    chunks_unchanged: int = 0
    chunks_embedded: int = 0
    embedding_requests: int = 0
    cache_hits: int = 0
    failures: list[IngestIssue] = field(default_factory=list)
    warnings: list[IngestIssue] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return self.files_failed == 0 and not self.interrupted

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    # mini-rag 0.1.3's `index_document(path)` returned the number of chunks: where an int is expected
    # (`int(report)`, `total += report`, `sum(reports)`), a report counts as the chunks its files now have.
    def __index__(self) -> int:
        return self.chunks_added + self.chunks_unchanged

    def __add__(self, other: object) -> int:
        if isinstance(other, int) and not isinstance(other, bool):
            return self.__index__() + other
        return NotImplemented

    __radd__ = __add__

    def raise_if_nothing_indexed(self) -> None:
        """Raise the first failure as a `DocumentError` if every item failed (nothing added, updated or kept):
        a call that asked for one thing must not look like it worked."""
        if self.failures and not (self.files_added or self.files_updated or self.files_skipped):
            first = self.failures[0]
            more = f" (and {len(self.failures) - 1} more failures)" if len(self.failures) > 1 else ""
            raise DocumentError(first.path, first.reason + more)


@dataclass(frozen=True, slots=True)
class IngestProgress:
    """A snapshot handed to the `progress` callback after each change (on the event loop's thread).

    `files_total` is None until discovery has finished; `chunks_total` grows as files are chunked.
    """

    files_total: int | None
    files_done: int
    chunks_total: int
    chunks_embedded: int
    chunks_written: int
    embedding_requests: int
    files_failed: int
