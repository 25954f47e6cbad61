"""Names to implementations: store URIs and `provider:model` strings map to lazily imported classes.

Nothing here imports a backend until it is asked for, so `import mini` stays fast and optional extras stay
optional. A missing extra raises `MissingDependencyError` naming the extra to install.

Store URIs select a backend by scheme (`_STORE_SCHEMES`), a `.db` suffix (Milvus Lite) or `:memory:`
(Qdrant); a plain path is an embedded LanceDB. Third-party store backends plug in through the entry point
group ``mini.stores``: the entry point's name is the URI scheme it serves and its value the backend class,
e.g. in the plug-in's pyproject.toml

    [project.entry-points."mini.stores"]
    pinecone = "mini_pinecone:PineconeBackend"

makes ``VectorStore("pinecone://index")`` build ``PineconeBackend(uri, collection_name=..., dimension=...,
token=...)``. The class implements `mini.stores.base.VectorStoreBackend` (construction does no I/O; filters
arrive parsed; `supports_hybrid` says whether `keyword_search` works) and should pass the contract suite
in `mini.testing.contracts`. Built-in schemes cannot be taken over; plug-ins are looked up only for schemes
that are not built in, so they cost nothing otherwise. The token comes from `MINI_STORE_TOKEN` unless given.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
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

# URI scheme (lower case) -> store kind, a key of STORES (DESIGN.md section 6).
_STORE_SCHEMES: dict[str, str] = {
    "lancedb": "lancedb",
    "milvus": "milvus",
    "http": "milvus",
    "https": "milvus",
    "qdrant": "qdrant",
    "qdrants": "qdrant",
    "qdrant+path": "qdrant",
}
STORE_ENTRY_POINTS = "mini.stores"

EMBEDDERS: dict[str, Entry] = {
    "local": Entry("mini.embeddings.local_onnx:LocalOnnxEmbedder", label="local ONNX embeddings"),
    "openai": Entry("mini.embeddings.openai:OpenAIEmbedder", label="OpenAI-compatible embeddings"),
    "azure": Entry("mini.embeddings.openai:AzureOpenAIEmbedder", label="Azure OpenAI embeddings"),
}

LLMS: dict[str, Entry] = {
    "openai": Entry("mini.llms.openai:OpenAIChat", label="OpenAI-compatible chat"),
    "azure": Entry("mini.llms.openai:AzureOpenAIChat", label="Azure OpenAI chat"),
    # Anthropic's Messages API is spoken over aiohttp like OpenAI's (see docs/design-decisions.md): no extra.
    "anthropic": Entry("mini.llms.anthropic:AnthropicChat", label="Anthropic"),
    "bedrock": Entry("mini.llms.bedrock:BedrockChat", "bedrock", "aioboto3", "AWS Bedrock"),
}


def load(entry: Entry) -> Any:
    """Import and return the class an entry names."""
    if entry.requires and importlib.util.find_spec(entry.requires) is None:
        raise MissingDependencyError(entry.label or entry.target, entry.extra or "", entry.requires)
    module_name, _, attr = entry.target.partition(":")
    if not attr:
        raise ConfigurationError(
            f"{entry.label or entry.target}: expected 'module:Class', got {entry.target!r}"
        )
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
    return functools.reduce(getattr, attr.split("."), module)


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
    """Which store backend a URI selects: a key of `STORES`, or the scheme of a plug-in (see the docstring)."""
    lowered = uri.lower()
    scheme, sep, _ = lowered.partition("://")
    if sep:
        if scheme in _STORE_SCHEMES:
            return _STORE_SCHEMES[scheme]
        if scheme in _plugin_stores():
            return scheme
        if not lowered.endswith(".db"):  # any URI ending in .db has always meant Milvus Lite
            raise _unknown_scheme(uri)
    if lowered.endswith(".db"):
        return "milvus"
    if lowered == ":memory:":
        return "qdrant"
    return "lancedb"


def store_entry(uri: str) -> Entry:
    """The backend class entry for a store URI: built in, or a plug-in's entry point."""
    kind = store_kind(uri)
    entry = STORES.get(kind)
    return entry if entry is not None else _plugin_stores()[kind]


def _plugin_stores() -> dict[str, Entry]:
    """Store backends other packages register (entry point group ``mini.stores``), by URI scheme."""
    found: dict[str, Entry] = {}
    for point in importlib.metadata.entry_points(group=STORE_ENTRY_POINTS):
        scheme = point.name.lower()
        if scheme not in _STORE_SCHEMES:  # built-in schemes cannot be taken over
            dist = getattr(point.dist, "name", None) or "an installed package"
            found[scheme] = Entry(point.value, label=f"store backend {point.name!r} from {dist}")
    return found


def _unknown_scheme(uri: str) -> ConfigurationError:
    scheme = uri.split("://", 1)[0]
    return ConfigurationError(
        f"unknown store URI scheme {scheme!r} in {uri!r}; use a directory path (LanceDB), lancedb://, "
        "milvus://, http(s):// (Milvus), a .db path (Milvus Lite), qdrant:// or qdrant+path://, or install "
        f"a package that registers the scheme in the {STORE_ENTRY_POINTS!r} entry point group"
    )
