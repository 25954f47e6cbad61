"""Server settings: environment variables with the `MINI_` prefix (or `.env`), or passed to `create_app`."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from mini._sse import KEEPALIVE_SECONDS


class ServerSettings(BaseSettings):
    """Limits and security of `mini serve` / `create_app`. Every field has a `MINI_<NAME>` variable."""

    model_config = SettingsConfigDict(env_prefix="MINI_", env_file=".env", extra="ignore")

    # Comma-separated bearer keys (MINI_API_KEYS). Empty: no authentication, and `mini serve` then binds to
    # loopback only (unless --insecure-no-auth).
    api_keys: str = ""
    # Host names the server answers to (MINI_ALLOWED_HOSTS), any port: comma-separated names or IPs,
    # `*.example.com` for subdomains, `*` for any. Empty: without keys, localhost, 127.0.0.1, ::1 and the
    # address the request arrived at (DNS rebinding fails); with keys, any host (a rebound page has no key).
    allowed_hosts: str = ""
    # /docs, /redoc and /openapi.json without a key (MINI_PUBLIC_DOCS=true); by default they need one too.
    public_docs: bool = False
    # Request bodies of POST /v1/documents (uploads, bulk texts) above this are refused with 413 before they are
    # read to the end.
    max_body_bytes: int = 25 * 1024 * 1024
    # Every other request body (questions, chat, OpenAI-compatible history; never above max_body_bytes):
    # FastAPI parses these JSON bodies on the event loop, so they stay small. 1 MiB holds a 4,000-character
    # question many times over, or an OpenAI chat history of ~250 turns of 4 KB (clients send it whole); parsing
    # it costs the loop 2 ms (one long string) to 20 ms (a MiB of small numbers), where 23 MB cost 0.7 s.
    max_query_body_bytes: int = 1024 * 1024
    max_question_chars: int = 4_000
    # Comma-separated origins allowed by CORS (MINI_CORS_ORIGINS); empty: CORS off.
    cors_origins: str = ""
    # Server-side paths may be ingested only under this directory (MINI_INGEST_ROOT); unset: refused.
    ingest_root: str | None = None
    # URLs the server may fetch for ingestion (MINI_FETCH_ALLOW): comma-separated CIDRs and host names that
    # are allowed although private, loopback or link-local (refused by default: SSRF).
    fetch_allow: str = ""
    # Chat sessions: history kept per session, at most this many sessions, each forgotten after the TTL.
    max_sessions: int = 1_000
    session_ttl_s: float = 3_600.0
    max_history_turns: int = 10
    # Ingestion jobs run at most this many at a time; finished jobs are kept this long for GET /v1/jobs/{id}.
    max_concurrent_jobs: int = 2
    job_ttl_s: float = 3_600.0
    # Where job states are kept so they survive a restart (MINI_JOBS_DB, an SQLite file); unset: next to the
    # store when it is a local directory, else in the user's data directory.
    jobs_db: str | None = None
    # Several replicas share sessions and jobs in Redis at this URL (MINI_REDIS_URL, also `redis_url` in
    # mini.toml: the same knob as mini._settings.Settings.redis_url); unset: in this process (jobs in SQLite).
    redis_url: str | None = None
    # The server's own event-loop lag is sampled at this interval (reported in GET /v1/stats).
    lag_sample_s: float = 0.01
    # Streams send a keep-alive comment after this many seconds without an event (MINI_SSE_KEEPALIVE_S), so
    # proxies that cut idle connections keep a long generation open; 0 sends none.
    sse_keepalive_s: float = KEEPALIVE_SECONDS

    def keys(self) -> frozenset[str]:
        return frozenset(_items(self.api_keys))

    def origins(self) -> list[str]:
        return _items(self.cors_origins)

    def host_patterns(self) -> list[str]:
        return _items(self.allowed_hosts)


def _items(text: str) -> list[str]:
    """The entries of a comma-separated setting, stripped, blanks left out."""
    return [item for item in (part.strip() for part in text.split(",")) if item]
