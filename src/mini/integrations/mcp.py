"""An MCP server (official `mcp` SDK) over an `AgenticRAG`: tools `search`, `ask` and `ingest` for MCP clients
(desktop assistants, IDEs, agents), over stdio or streamable HTTP. `mini mcp` runs it (extra `mcp`).

What a tool may touch is decided here, not by the model calling it: the client's model picks the arguments, and
a prompt-injected document can pick them too. So `ingest` reads only paths that resolve (symlinks followed,
`Path.resolve()`) under an allowed root, none by default; a walked file that links out of the roots is skipped
and named; and URLs are fetched under `FetchPolicy.refusing()` (public addresses only, like the HTTP server),
so the tool cannot reach loopback services, the intranet or the cloud metadata endpoint.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, Field

from mini.errors import ConfigurationError, DocumentError, MiniError, MissingDependencyError
from mini.ingest.loaders import discover
from mini.ingest.netguard import FetchPolicy, is_loopback
from mini.ingest.web import is_url
from mini.rag import AgenticRAG
from mini.types import RetrievalResult

try:
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
except ImportError as exc:
    raise MissingDependencyError("mini mcp (mini.integrations.mcp)", "mcp", "mcp") from exc

__all__ = [
    "Answer",
    "IngestSummary",
    "Passage",
    "SearchResult",
    "check_paths",
    "create_server",
    "is_loopback",
]

MAX_TOP_K = 50  # a model asking for more would flood its own context
FETCH_HINT = "mini mcp fetches only public addresses"
TopK = Annotated[
    int | None, Field(ge=1, le=MAX_TOP_K, description="Passages to retrieve (default: configured).")
]


class Passage(BaseModel):
    """One retrieved chunk; in `ask`, `number` is what the answer's `[n]` markers point at."""

    number: int
    source: str
    score: float
    text: str
    id: str

    @classmethod
    def of(cls, number: int, hit: RetrievalResult) -> Passage:
        return cls(number=number, source=hit.source, score=hit.score, text=hit.text, id=hit.id)


class SearchResult(BaseModel):
    passages: list[Passage]


class Answer(BaseModel):
    answer: str
    sources: list[Passage]


class IngestSummary(BaseModel):
    summary: str
    files_seen: int
    files_added: int
    files_updated: int
    files_unchanged: int
    files_failed: int
    chunks_added: int
    failures: list[str]
    skipped_outside_roots: list[str]


def create_server(
    rag: AgenticRAG, *, allowed_roots: Sequence[str | Path] = (), name: str = "mini-rag"
) -> MCPServer:
    """The MCP server over `rag`. `allowed_roots`: directories `ingest` may read under (none: no paths, only
    public URLs); each must exist. Resolves the roots (blocking: call before the event loop, as the CLI does)."""
    roots = _resolve_roots(allowed_roots)
    where = ", ".join(str(root) for root in roots) if roots else "none (start mini mcp with --allow-root DIR)"
    # WARNING: the SDK configures the root logger; INFO would log every call to the client's stderr log.
    server: MCPServer = MCPServer(name, instructions=_INSTRUCTIONS, log_level="WARNING")

    @server.tool(description="Search the indexed documents; the best passages with their source and score.")
    async def search(query: str, top_k: TopK = None) -> SearchResult:
        with _tool_errors():
            hits = await rag.search_async(query, top_k=top_k)
        return SearchResult(passages=[Passage.of(i, hit) for i, hit in enumerate(hits, 1)])

    @server.tool(
        description="Answer a question from the indexed documents; [n] in the answer cites sources[n-1]."
    )
    async def ask(question: str, top_k: TopK = None) -> Answer:
        with _tool_errors():
            response = await rag.query_async(question, top_k=top_k)
        chunks = response.retrieved_chunks
        return Answer(answer=response.answer, sources=[Passage.of(i, hit) for i, hit in enumerate(chunks, 1)])

    @server.tool(
        description="Index files, directories or public http(s) URLs; re-indexing skips unchanged files. "
        f"Paths must be under an allowed root ({where}); relative paths are taken from the first one."
    )
    async def ingest(paths: list[str]) -> IngestSummary:
        if not paths:
            raise ToolError("give at least one path or URL")
        urls = [p for p in paths if is_url(p)]
        files, skipped = await asyncio.to_thread(check_paths, [p for p in paths if not is_url(p)], roots)
        if not files and not urls:
            raise ToolError(f"nothing to index: no supported files in {', '.join(paths)}")
        with _tool_errors():
            report = await rag.index_documents_async(
                [*files, *urls], fetch_policy=FetchPolicy.refusing(hint=FETCH_HINT)
            )
        summary = (
            f"{report.files_seen} file(s): {report.files_added} added, {report.files_updated} updated, "
            f"{report.files_skipped} unchanged, {report.files_failed} failed; {report.chunks_added} chunks added"
        )
        if skipped:
            summary += f"; {len(skipped)} skipped (they resolve outside the allowed roots)"
        return IngestSummary(
            summary=summary,
            files_seen=report.files_seen,
            files_added=report.files_added,
            files_updated=report.files_updated,
            files_unchanged=report.files_skipped,
            files_failed=report.files_failed,
            chunks_added=report.chunks_added,
            failures=[f"{failure.path}: {failure.reason}" for failure in report.failures],
            skipped_outside_roots=skipped,
        )

    return server


_INSTRUCTIONS = (
    "Mini RAG: documents indexed locally. Use `search` for passages, `ask` for a cited answer "
    "(cite the sources it returns), `ingest` to index more files under the allowed roots or public URLs."
)


def check_paths(paths: Sequence[str], roots: Sequence[Path]) -> tuple[list[str], list[str]]:
    """The files to index for `paths`, and the walked files skipped because they resolve outside `roots`.

    Every given path must resolve (symlinks followed) under one of `roots`, else `ToolError` and nothing is
    indexed; relative paths are taken from the first root. Directories are walked like `mini ingest` does;
    a file inside one that links out of the roots is skipped, not read. Files keep the name the user sees
    (not the resolved one), so sources match `mini ingest`'s. Blocking disk I/O: run it in a thread.
    """
    if not paths:
        return [], []
    if not roots:
        raise ToolError("ingesting paths is disabled: restart the server with `mini mcp --allow-root DIR`")
    given = [Path(roots[0], Path(p).expanduser()) for p in paths]  # an absolute path replaces the root
    refused = [str(p) for p in given if not _under(p.resolve(), roots)]
    if refused:
        allowed = ", ".join(str(root) for root in roots)
        raise ToolError(
            f"refused (outside the allowed roots {allowed}): {', '.join(refused)}; nothing was indexed. "
            "Restart mini mcp with --allow-root for another directory"
        )
    try:
        found = discover(given)
    except DocumentError as exc:
        raise ToolError(f"{exc}; nothing was indexed") from exc
    files: list[str] = []
    skipped: list[str] = []
    for path in found:
        (files if _under(path.resolve(), roots) else skipped).append(str(path))
    return files, skipped


def _under(path: Path, roots: Sequence[Path]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def _resolve_roots(roots: Sequence[str | Path]) -> list[Path]:
    resolved = []
    for root in roots:
        path = Path(root).expanduser().resolve()
        if not path.is_dir():
            raise ConfigurationError(f"--allow-root {root}: not a directory")
        resolved.append(path)
    return resolved


@contextmanager
def _tool_errors() -> Iterator[None]:
    """Mini RAG's own errors go to the model with their message (bad question, provider down, ...); the SDK
    would hide anything that is not a `ToolError` behind "Error executing tool"."""
    try:
        yield
    except MiniError as exc:
        raise ToolError(str(exc)) from exc
