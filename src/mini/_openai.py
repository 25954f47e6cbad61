"""What the OpenAI-compatible chat and embedding adapters share: credentials and the HTTP client."""

from __future__ import annotations

from mini._http import HttpClient
from mini.errors import ConfigurationError

PROVIDER = "openai"
DEFAULT_BASE_URL = "https://api.openai.com/v1"


def resolve_credentials(base_url: str | None, api_key: str | None) -> tuple[str, str | None]:
    """Fill base_url/api_key from the environment. Local servers (Ollama, vLLM, LM Studio) need no key."""
    from mini.config import load_settings

    settings = load_settings()
    base_url = base_url or settings.openai_base_url
    if api_key is None and settings.openai_api_key is not None:
        api_key = settings.openai_api_key.get_secret_value() or None
    if not api_key and base_url is None:
        raise ConfigurationError(
            "no API key for the OpenAI provider: set OPENAI_API_KEY (or pass api_key=), "
            "or point base_url/OPENAI_BASE_URL at an OpenAI-compatible server"
        )
    return base_url or DEFAULT_BASE_URL, api_key


def openai_http(base_url: str, api_key: str | None, *, timeout: float) -> HttpClient:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return HttpClient(base_url, provider=PROVIDER, headers=headers, timeout=timeout)
