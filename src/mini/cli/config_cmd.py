"""`mini config`: the effective configuration and where each value came from.

Every settings field (mini._settings.Settings) with its effective value, secrets masked, and its source: a
flag, the environment, `.env`, `mini.toml`, or the default. Knobs left unset show the value the config objects
use (`LLMConfig.from_settings` & co.), so "default" rows are what will actually run, not "None".
"""

from __future__ import annotations

import json
from typing import Any

from rich.markup import escape

from mini.cli.common import (
    CollectionOpt,
    EmbeddingOpt,
    JsonOpt,
    LLMOpt,
    ModeOpt,
    RerankOpt,
    RewriteOpt,
    TopKOpt,
    UriOpt,
    fail,
    load_settings_or_exit,
    out,
    settings_flags,
)

MASK = "****"


def effective(flags: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Field name -> {"value", "source", "env"}: the table `mini config` prints (and `--json` returns)."""
    from mini._settings import SECRET_FIELDS, Settings, env_names, sources_of
    from mini.config import SETTINGS_VIEWS, LLMConfig, RerankerConfig, RetrievalConfig
    from mini.errors import InvalidInputError

    settings = load_settings_or_exit(**flags)
    try:
        sources = sources_of(flags)
    except InvalidInputError as exc:  # mini.toml changed between the two reads
        fail(str(exc))
    views: dict[type[Any], Any] = {
        LLMConfig: LLMConfig.from_settings(settings),
        RetrievalConfig: RetrievalConfig.from_settings(settings),
        RerankerConfig: RerankerConfig.from_settings(settings),
    }
    table: dict[str, dict[str, Any]] = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None and name in SETTINGS_VIEWS:
            view, field = SETTINGS_VIEWS[name]
            config = views[view]
            if name == "retrieval_mode":  # None means "hybrid unless use_hybrid_search is off"
                value = config.retrieval_mode or ("hybrid" if config.use_hybrid_search else "dense")
            elif name == "reranker_model" and config.kind == "cross-encoder":
                value = config.model_path
            else:
                value = getattr(config, field)
        if name in SECRET_FIELDS and value is not None:
            value = MASK
        table[name] = {"value": value, "source": sources[name], "env": env_names(name)[0]}
    if settings.llm is None and table["llm"]["value"] == "none":
        table["llm"]["note"] = "offline: no MINI_LLM and no OPENAI_API_KEY"
    return table


def config(
    uri: UriOpt = None,
    collection: CollectionOpt = None,
    embedding_model: EmbeddingOpt = None,
    llm: LLMOpt = None,
    mode: ModeOpt = None,
    rerank: RerankOpt = None,
    top_k: TopKOpt = None,
    rewrite: RewriteOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the effective configuration (secrets masked) and where each value came from: default, mini.toml,
    .env, env or flag. Takes the same flags as `mini query`, to preview what they change."""
    flags = settings_flags(uri, collection, embedding_model, llm, mode, rerank, top_k, rewrite)
    table = effective(flags)
    if as_json:
        print(json.dumps(table, indent=2, default=str))
        return
    width = max(len(name) for name in table)
    for name, row in table.items():
        value = "unset" if row["value"] is None else str(row["value"])
        note = f"  ({row['note']})" if "note" in row else ""
        source = row["source"] + (f" {row['env']}" if row["source"] in ("env", ".env") else "")
        out.print(
            f"{name:<{width}}  {escape(value):<28} [dim]{escape(source)}{escape(note)}[/]", soft_wrap=True
        )
