"""`mini models pull | list`: fetch a local embedding model from the Hugging Face Hub ahead of time, and show
which local models are available (bundled, or in the Hugging Face cache) with their sizes.

`pull` is for machines that will run offline later (HF_HUB_OFFLINE=1, air-gapped containers built with the
model baked in), and for refreshing a cached model: the embedder itself never re-checks a cached model.
User mistakes (a name that is not a repo, no such model, HF_HUB_OFFLINE set, an architecture that cannot run
locally) exit 2; a Hub that cannot be reached exits 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, TypedDict

import typer
from rich.markup import escape

from mini.cli.common import JsonOpt, fail, load_settings_or_exit, out


class _Row(TypedDict):
    model: str
    source: str
    size_bytes: int
    status: str
    path: str


models_app = typer.Typer(
    name="models",
    help="Local embedding models: pre-fetch one from the Hugging Face Hub, list the available ones.",
    no_args_is_help=True,
    add_completion=False,
)


def _local_name(name: str | None) -> str:
    """NAME without its `local:` prefix; no NAME: the configured embedding model if it is local, else MiniLM."""
    from mini.embeddings.local_onnx import DEFAULT_MODEL
    from mini.embeddings.quantize import split_variant

    if name is None:
        configured = load_settings_or_exit().embedding_model
        name = configured if configured.startswith("local:") else DEFAULT_MODEL
    provider, sep, rest = name.partition(":")
    if sep and provider != "local":
        fail(f"{name!r} is not a local model; `mini models pull` fetches local:<org>/<repo> models")
    return split_variant(rest if sep else name)[0]  # an -int8 variant is made locally from the same model


@models_app.command("pull")
def pull(
    name: Annotated[
        str | None,
        typer.Argument(
            help="all-MiniLM-L6-v2 or a Hugging Face repo (org/repo), with or without `local:`. "
            "Default: the configured embedding model (MINI_EMBEDDING_MODEL) if it is local, else MiniLM."
        ),
    ] = None,
) -> None:
    """Download a local embedding model into the Hugging Face cache (HF_HOME), or refresh it."""
    from mini.embeddings import hub
    from mini.embeddings.local_onnx import bundled_model_dir
    from mini.embeddings.st_config import read_spec
    from mini.errors import ConfigurationError, ProviderError

    local = _local_name(name)
    repo_id = hub.repo_id_for(local)
    if repo_id is None:
        fail(f"{local!r} is not a Hugging Face repo: name it as org/repo, e.g. BAAI/bge-small-en-v1.5")
    bundled = bundled_model_dir() if repo_id == hub.DEFAULT_REPO else None
    if bundled is not None:
        out.print(f"{escape(repo_id)} is bundled ({escape(str(bundled))}): nothing to download.")
        return
    try:
        path = hub.download_model(repo_id)
        spec = read_spec(path)
    except ProviderError as exc:  # the Hub could not be reached or failed
        fail(str(exc), 1)
    except ConfigurationError as exc:  # no such model, offline, or it cannot run locally
        fail(str(exc))
    out.print(
        f"{escape(repo_id)}: {spec.dimension} dimensions, {'+'.join(spec.pooling)} pooling, "
        f"up to {spec.max_seq_length} tokens; in {escape(str(path))}"
    )
    out.print(f"Use it with --embedding-model local:{escape(repo_id)} (or MINI_EMBEDDING_MODEL).")


@models_app.command("list")
def list_models(as_json: JsonOpt = False) -> None:
    """The bundled model and the models in the Hugging Face cache, with their sizes on disk."""
    from mini.embeddings import hub
    from mini.embeddings.local_onnx import DEFAULT_MODEL, bundled_model_dir

    rows: list[_Row] = []
    bundled = bundled_model_dir()
    if bundled is not None:
        size = sum(f.stat().st_size for f in bundled.rglob("*") if f.is_file())
        rows.append(_row(f"local:{DEFAULT_MODEL}", "bundled", size, "ready", bundled))
    for model in hub.list_cached():
        rows.append(_row(f"local:{model.repo_id}", "hf-cache", model.size_bytes, model.status, model.path))
    if as_json:
        out.print_json(json.dumps(rows))
        return
    if not rows:
        out.print(f"No local model yet: `mini models pull` fetches {DEFAULT_MODEL} into {hub.cache_dir()}.")
        return
    from rich.table import Table

    table = Table()
    for column in ("model", "size", "source", "status"):
        table.add_column(column, justify="right" if column == "size" else "left", no_wrap=True)
    table.add_column("path", overflow="fold")  # the long one: wrapped, never cut
    for row in rows:
        table.add_row(
            escape(row["model"]),
            _megabytes(row["size_bytes"]),
            row["source"],
            row["status"],
            escape(row["path"]),
        )
    out.print(table)


def _row(model: str, source: str, size: int, status: str, path: Path) -> _Row:
    return {"model": model, "source": source, "size_bytes": size, "status": status, "path": str(path)}


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
