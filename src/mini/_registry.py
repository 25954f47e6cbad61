"""Names to implementations: store URIs and `provider:model` strings map to lazily imported classes.

Nothing here imports a backend until it is asked for, so `import mini` stays fast and optional extras stay
optional. A missing extra raises `MissingDependencyError` naming the extra to install.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any

from mini.errors import ConfigurationError, MissingDependencyError


@dataclass(frozen=True, slots=True)
class Entry:
    target: str  # "module:Class"
    extra: str | None = None  # the pyproject extra that provides `requires`
    requires: str | None = None  # import name that must be importable
    label: str = ""


STORES: dict[str, Entry] = {
    "lancedb": Entry("mini.stores.lancedb:LanceDBBackend", label="LanceDB"),
    "milvus": Entry("mini.stores.milvus:MilvusBackend", "milvus", "pymilvus", "Milvus"),
    "qdrant": Entry("mini.stores.qdrant:QdrantBackend", "qdrant", "qdrant_client", "Qdrant"),
}

EMBEDDERS: dict[str, Entry] = {
    "local": Entry("mini.embeddings.local_onnx:LocalOnnxEmbedder", label="local ONNX embeddings"),
    "openai": Entry("mini.embeddings.openai:OpenAIEmbedder", label="OpenAI-compatible embeddings"),
}

LLMS: dict[str, Entry] = {
    "openai": Entry("mini.llms.openai:OpenAIChat", label="OpenAI-compatible chat"),
    # Anthropic's Messages API is spoken over aiohttp like OpenAI's (see docs/design-decisions.md): no extra.
    "anthropic": Entry("mini.llms.anthropic:AnthropicChat", label="Anthropic"),
    "bedrock": Entry("mini.llms.bedrock:BedrockChat", "bedrock", "aioboto3", "AWS Bedrock"),
}


def load(entry: Entry) -> Any:
    """Import and return the class an entry names."""
    if entry.requires and importlib.util.find_spec(entry.requires) is None:
        raise MissingDependencyError(entry.label or entry.target, entry.extra or "", entry.requires)
    module_name, _, attr = entry.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise ConfigurationError(
                f"{entry.label or module_name} is not available in this version of mini-rag"
            ) from exc
        if entry.extra:
            raise MissingDependencyError(entry.label or entry.target, entry.extra, exc.name) from exc
        raise
    return getattr(module, attr)


def split_model(spec: str, *, default_provider: str) -> tuple[str, str]:
    """`"openai:gpt-4o-mini"` -> ("openai", "gpt-4o-mini"); a bare name uses `default_provider` (the seed's style)."""
    provider, sep, name = spec.partition(":")
    if not sep:
        return default_provider, spec
    return provider.strip().lower(), name.strip()


def lookup(table: dict[str, Entry], key: str, what: str) -> Entry:
    try:
        return table[key]
    except KeyError:
        known = ", ".join(sorted(table))
        raise ConfigurationError(f"unknown {what} {key!r}; known: {known}") from None


def store_kind(uri: str) -> str:
    """Which store backend a URI selects (DESIGN.md section 6)."""
    lowered = uri.lower()
    if lowered.startswith("lancedb://"):
        return "lancedb"
    if lowered.startswith(("milvus://", "http://", "https://")) or lowered.endswith(".db"):
        return "milvus"
    if lowered.startswith(("qdrant://", "qdrant+path://", "qdrants://")) or lowered == ":memory:":
        return "qdrant"
    if "://" in uri:
        scheme = uri.split("://", 1)[0]
        raise ConfigurationError(
            f"unknown store URI scheme {scheme!r} in {uri!r}; use a directory path (LanceDB), lancedb://, "
            "milvus://, http(s):// (Milvus), a .db path (Milvus Lite), qdrant:// or qdrant+path://"
        )
    return "lancedb"
