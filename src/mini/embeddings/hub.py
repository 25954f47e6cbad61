"""Local models from the Hugging Face Hub: find one in the standard HF cache, download one, list the cache.

Used when no model directory is configured and the bundled package is not installed (the bundled package wins:
it needs no network). Only the files the local embedder reads are fetched (config, tokenizer, safetensors
weights, the sentence-transformers configs), never the ONNX/OpenVINO/PyTorch copies repos also carry.

A model already in the cache is used without asking the Hub anything: startup stays offline and fast, and an
unreachable or slow network never delays the first query. `mini models pull` is what refreshes a model.

huggingface_hub reads HF_ENDPOINT, HF_HUB_OFFLINE and HF_HOME/HF_HUB_CACHE once, when it is imported, into
`huggingface_hub.constants`. This module reads those constants at call time and passes the endpoint and cache
explicitly, because huggingface_hub builds file URLs from a template fixed at import and only rewrites them when
`endpoint=` is given. The download itself (timeouts, retries, resumable transfers, file locks between processes,
the progress bar, shown on a terminal only) is huggingface_hub's.

Everything here blocks (disk and network): async callers run it in a worker thread.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mini.errors import ConfigurationError, ModelNotFoundError, ProviderConnectionError

logger = logging.getLogger("mini.embeddings")

DEFAULT_REPO = "sentence-transformers/all-MiniLM-L6-v2"
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")
# Small files first: the architecture is checked before ~100 MB of weights are fetched for nothing.
CONFIG_PATTERNS = [
    "config.json",
    "tokenizer.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "*Pooling/config.json",
]
WEIGHTS_FILE = "model.safetensors"
MODEL_PATTERNS = [*CONFIG_PATTERNS, WEIGHTS_FILE]


@dataclass(frozen=True, slots=True)
class CachedModel:
    """A model repo in the HF cache; `status` is "ready", "incomplete" or "unsupported"."""

    repo_id: str
    path: Path
    size_bytes: int
    status: str


def repo_id_for(name: str) -> str | None:
    """The Hub repo a `local:` model name means: `all-MiniLM-L6-v2` is sentence-transformers' (as in
    sentence-transformers itself), `org/repo` is that repo; any other bare name is None (ambiguous)."""
    if name.lower() == DEFAULT_REPO.rsplit("/", 1)[1].lower():
        return DEFAULT_REPO
    org, sep, repo = name.partition("/")
    if sep and org and repo and "/" not in repo:
        return name
    return None


def pull_command(repo_id: str) -> str:
    return "mini models pull" if repo_id == DEFAULT_REPO else f"mini models pull {repo_id}"


def _hub() -> Any:
    try:
        import huggingface_hub
        import huggingface_hub.constants
        import huggingface_hub.errors  # submodules: the package's lazy attributes do not include them
    except ImportError as exc:  # a core dependency; only a broken install gets here
        raise ModelNotFoundError(
            "downloading a local model needs huggingface_hub: pip install huggingface_hub"
        ) from exc
    return huggingface_hub


def _endpoint() -> str:
    return str(_hub().constants.ENDPOINT)


def cache_dir() -> Path:
    """The standard HF hub cache (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub)."""
    return Path(_hub().constants.HF_HUB_CACHE)


def is_offline() -> bool:
    return bool(_hub().constants.HF_HUB_OFFLINE)


def _complete(folder: str | Path) -> Path | None:
    path = Path(folder)
    return path if all((path / name).is_file() for name in REQUIRED_FILES) else None


def find_cached(repo_id: str) -> Path | None:
    """The cached snapshot of `repo_id` holding every file the embedder needs, or None. No network."""
    hub = _hub()
    errors = hub.errors
    try:
        folder = hub.snapshot_download(
            repo_id,
            allow_patterns=MODEL_PATTERNS,
            cache_dir=cache_dir(),
            local_files_only=True,
            library_name="mini-rag",
        )
    except (errors.LocalEntryNotFoundError, errors.HFValidationError, OSError):
        return None  # not cached, partly cached (IncompleteSnapshotError), or not a valid repo id
    return _complete(folder)


def ensure_model(repo_id: str, *, alternative: str = "") -> Path:
    """The cached snapshot of `repo_id`, downloaded first if it is not complete in the cache."""
    cached = find_cached(repo_id)
    if cached is not None:
        logger.debug("local model %s found in the HF cache: %s", repo_id, cached)
        return cached
    return download_model(repo_id, alternative=alternative)


def download_model(repo_id: str, *, alternative: str = "") -> Path:
    """Fetch (or refresh) `repo_id`'s files into the HF cache and return the snapshot directory.

    Raises ModelNotFoundError when offline (HF_HUB_OFFLINE) or when the Hub has no such model,
    ProviderConnectionError when the Hub cannot be reached (or fails), and ConfigurationError when the model
    cannot run locally (checked before the weights are fetched). `alternative` ends the not-found messages
    (e.g. the bundled package's install command)."""
    from mini.embeddings.st_config import read_spec

    hub = _hub()
    endpoint = _endpoint()
    if is_offline():
        raise ModelNotFoundError(
            f"the local embedding model {repo_id} is not in the Hugging Face cache ({cache_dir()}) and "
            f"HF_HUB_OFFLINE is set: run `{pull_command(repo_id)}` with network access (or unset "
            f"HF_HUB_OFFLINE), or set MINI_MODEL_PATH to a model directory{alternative}"
        )
    logger.info("downloading the local embedding model %s from %s into %s", repo_id, endpoint, cache_dir())
    options: dict[str, Any] = {
        "cache_dir": cache_dir(),
        "endpoint": endpoint,
        "library_name": "mini-rag",
        "library_version": _version(),
        "tqdm_class": _terminal_progress_bar(),
    }
    with _hub_errors(repo_id, endpoint, alternative):
        configs = Path(hub.snapshot_download(repo_id, allow_patterns=CONFIG_PATTERNS, **options))
    if not (configs / "config.json").is_file():
        raise ModelNotFoundError(
            f"{repo_id} on {endpoint} has no config.json: it is not a transformers model"
        )
    read_spec(configs)  # refuses what cannot run locally (architecture, modules, pooling) before the weights
    with _hub_errors(repo_id, endpoint, alternative):
        folder = hub.snapshot_download(repo_id, allow_patterns=MODEL_PATTERNS, **options)
    complete = _complete(folder)
    if complete is None:
        missing = [name for name in REQUIRED_FILES if not (Path(folder) / name).is_file()]
        raise ModelNotFoundError(
            f"{repo_id} on {endpoint} has no {', '.join(missing)}: the local embedder reads safetensors weights "
            "and a fast-tokenizer tokenizer.json; pick a repo that has them"
        )
    return complete


def _read_config(folder: Path) -> dict[str, Any]:
    import json

    data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ConfigurationError(f"{folder / 'config.json'} is not a JSON object")
    return data


def _terminal_progress_bar() -> type:
    """huggingface_hub's progress bar, silenced when stderr is not a terminal: its "Fetching N files" bar
    ignores that, and a server's or CI's log must not fill with carriage-return frames."""
    from huggingface_hub.utils import tqdm

    class TerminalOnly(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if not sys.stderr.isatty():
                kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return TerminalOnly


def _version() -> str:
    from mini._version import __version__

    return __version__


@contextmanager
def _hub_errors(repo_id: str, endpoint: str, alternative: str) -> Iterator[None]:
    """huggingface_hub's exceptions -> ours, each saying what to do about it."""
    errors = _hub().errors
    try:
        yield
    except (errors.RepositoryNotFoundError, errors.RevisionNotFoundError) as exc:
        raise ModelNotFoundError(
            f"no model {repo_id!r} on {endpoint} (or it is private or gated: log in with `hf auth login`); "
            f"check the name, e.g. local:BAAI/bge-small-en-v1.5{alternative}"
        ) from exc
    except errors.HFValidationError as exc:
        raise ModelNotFoundError(f"{repo_id!r} is not a Hugging Face repo id ({exc})") from exc
    except (errors.LocalEntryNotFoundError, errors.HfHubHTTPError, OSError) as exc:
        # LocalEntryNotFoundError: the Hub could not be reached and nothing usable is cached. huggingface_hub
        # has already retried (429/5xx/timeouts) and timed out (HF_HUB_ETAG_TIMEOUT, HF_HUB_DOWNLOAD_TIMEOUT).
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ProviderConnectionError(
            f"could not download the local embedding model {repo_id} from {endpoint} ({reason})",
            provider="huggingface",
            hint=f"check the network (HTTPS_PROXY, HF_ENDPOINT), or run `{pull_command(repo_id)}` where the Hub "
            f"is reachable{alternative}",
        ) from exc


def list_cached() -> list[CachedModel]:
    """Every model repo in the HF cache, with its size on disk and whether the local embedder can use it."""
    from mini.embeddings.st_config import check_architecture

    hub = _hub()
    try:
        info = hub.scan_cache_dir(cache_dir())
    except hub.errors.CacheNotFound:
        return []
    models: list[CachedModel] = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id.lower()):
        if repo.repo_type != "model":
            continue
        folder = find_cached(repo.repo_id)
        status = "incomplete"
        if folder is not None:
            try:
                check_architecture(folder, _read_config(folder))
                status = "ready"
            except (ConfigurationError, ValueError):
                status = "unsupported"
        models.append(CachedModel(repo.repo_id, folder or repo.repo_path, repo.size_on_disk, status))
    return models
