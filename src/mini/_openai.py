"""What the OpenAI-compatible chat and embedding adapters share: credentials, Azure OpenAI addressing and the
HTTP client."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mini._http import HttpClient, KeyAuth, resolve_endpoint
from mini.errors import ConfigurationError

if TYPE_CHECKING:
    from mini._http import ApiKey

PROVIDER = "openai"
AZURE_PROVIDER = "azure"
DEFAULT_BASE_URL = "https://api.openai.com/v1"


def resolve_credentials(base_url: str | None, api_key: ApiKey | None) -> tuple[str, ApiKey | None]:
    """Fill base_url/api_key from the environment. Local servers (Ollama, vLLM, LM Studio) need no key."""
    from mini.config import load_settings

    settings = load_settings()
    given = api_key if isinstance(api_key, str) or api_key is None else "provider"
    base_url, key = resolve_endpoint(
        base_url,
        given,
        env_base_url=settings.openai_base_url,
        env_api_key=settings.openai_api_key,
        default_base_url=DEFAULT_BASE_URL,
        missing="no API key for the OpenAI provider: set OPENAI_API_KEY (or pass api_key=), "
        "or point base_url/OPENAI_BASE_URL at an OpenAI-compatible server",
    )
    return base_url, key if api_key is None or isinstance(api_key, str) else api_key


def openai_http(
    base_url: str,
    api_key: ApiKey | None,
    *,
    timeout: float,
    default_headers: Mapping[str, str] | None = None,
    default_query: Mapping[str, str] | None = None,
) -> HttpClient:
    """The client of an OpenAI-compatible server: a key as `Authorization: Bearer`, a key provider called
    per request, and the caller's gateway headers and query parameters on every request."""
    headers = dict(default_headers or {})
    auth = None
    if isinstance(api_key, str) and api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    elif api_key is not None and not isinstance(api_key, str):
        auth = KeyAuth(api_key)
    return HttpClient(
        base_url, provider=PROVIDER, headers=headers, query=default_query, auth=auth, timeout=timeout
    )


def azure_http(
    endpoint: str | None,
    api_key: ApiKey | None,
    api_version: str | None,
    *,
    timeout: float,
    default_headers: Mapping[str, str] | None = None,
    default_query: Mapping[str, str] | None = None,
) -> HttpClient:
    """The client of an Azure OpenAI resource (`https://<resource>.openai.azure.com`): `api-version` on every
    request; a key string as the `api-key` header, a key provider's value as an Entra ID bearer token."""
    missing = [name for name, value in (("base_url", endpoint), ("api_version", api_version)) if not value]
    if missing or api_key is None:
        raise ConfigurationError(
            "Azure OpenAI needs base_url (https://<resource>.openai.azure.com), api_version (e.g. "
            "'2024-10-21') and api_key (a key, or a callable returning an Entra ID token); missing: "
            + ", ".join(missing + (["api_key"] if api_key is None else []))
        )
    assert endpoint is not None and api_version is not None
    headers = dict(default_headers or {})
    auth = None
    if isinstance(api_key, str):
        headers["api-key"] = api_key
    else:
        auth = KeyAuth(api_key)
    query: dict[str, Any] = {**(default_query or {}), "api-version": api_version}
    base = endpoint.rstrip("/").removesuffix("/openai")
    return HttpClient(base, provider=AZURE_PROVIDER, headers=headers, query=query, auth=auth, timeout=timeout)


def azure_path(deployment: str, operation: str) -> str:
    """`/openai/deployments/{deployment}/{operation}`: Azure addresses a deployment, not a model."""
    return f"/openai/deployments/{deployment}/{operation}"
