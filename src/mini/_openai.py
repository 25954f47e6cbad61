"""What the OpenAI-compatible chat and embedding adapters share: credentials and the HTTP client."""

from __future__ import annotations

from mini._http import HttpClient, resolve_endpoint

PROVIDER = "openai"
DEFAULT_BASE_URL = "https://api.openai.com/v1"


def resolve_credentials(base_url: str | None, api_key: str | None) -> tuple[str, str | None]:
    """Fill base_url/api_key from the environment. Local servers (Ollama, vLLM, LM Studio) need no key."""
    from mini.config import load_settings

    settings = load_settings()
    return resolve_endpoint(
        base_url,
        api_key,
        env_base_url=settings.openai_base_url,
        env_api_key=settings.openai_api_key,
        default_base_url=DEFAULT_BASE_URL,
        missing="no API key for the OpenAI provider: set OPENAI_API_KEY (or pass api_key=), "
        "or point base_url/OPENAI_BASE_URL at an OpenAI-compatible server",
    )


def openai_http(base_url: str, api_key: str | None, *, timeout: float) -> HttpClient:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return HttpClient(base_url, provider=PROVIDER, headers=headers, timeout=timeout)
