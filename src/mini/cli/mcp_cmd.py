"""`mini mcp`: the MCP server (mini.integrations.mcp) over the configured store, on stdio or streamable HTTP."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from mini.cli.common import (
    CollectionOpt,
    EmbeddingOpt,
    LLMOpt,
    ModeOpt,
    RerankOpt,
    RewriteOpt,
    TopKOpt,
    UriOpt,
    build_rag,
    err,
    fail,
    run,
    settings_flags,
)


class Transport(StrEnum):
    stdio = "stdio"
    http = "http"


def mcp(
    transport: Annotated[
        Transport, typer.Option(help="stdio (an MCP client starts `mini mcp`) or streamable HTTP at /mcp.")
    ] = Transport.stdio,
    host: Annotated[
        str,
        typer.Option(
            help="With --transport http: interface to listen on (loopback unless --insecure-no-auth)."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="With --transport http: port.")] = 8765,
    allow_root: Annotated[
        list[Path] | None,
        typer.Option(
            "--allow-root",
            help="A directory the ingest tool may read under (repeatable). None given: the tool indexes only "
            "public URLs.",
        ),
    ] = None,
    insecure_no_auth: Annotated[
        bool,
        typer.Option(
            "--insecure-no-auth",
            help="Serve HTTP on a non-loopback --host without authentication (anyone reaching it can use the "
            "tools).",
        ),
    ] = False,
    uri: UriOpt = None,
    collection: CollectionOpt = None,
    embedding_model: EmbeddingOpt = None,
    llm: LLMOpt = None,
    mode: ModeOpt = None,
    rerank: RerankOpt = None,
    top_k: TopKOpt = None,
    rewrite: RewriteOpt = None,
) -> None:
    """Serve the index to MCP clients (tools: search, ask, ingest), offline by default like `mini query`.

    Nothing but MCP messages goes to stdout on stdio; logs go to stderr."""
    from mini.errors import MiniError

    try:
        from mini.integrations.mcp import create_server, is_loopback
    except MiniError as exc:  # the mcp extra is not installed
        fail(str(exc))
    if transport is Transport.http and not is_loopback(host) and not insecure_no_auth:
        fail(
            f"--host {host} is reachable from other machines and the MCP server has no authentication: "
            "bind a loopback address (or pass --insecure-no-auth)"
        )
    rag = build_rag(**settings_flags(uri, collection, embedding_model, llm, mode, rerank, top_k, rewrite))
    try:
        server = create_server(rag, allowed_roots=allow_root or ())
    except MiniError as exc:
        fail(str(exc))

    async def main() -> None:
        async with rag:
            if transport is Transport.stdio:
                await server.run_stdio_async()
            else:
                await server.run_streamable_http_async(host=host, port=port)

    if transport is Transport.http:
        shown = f"[{host}]" if ":" in host else host
        err.print(f"Mini RAG MCP server on http://{escape(shown)}:{port}/mcp (streamable HTTP)")
    run(main())
