"""Server settings: environment variables with the `MINI_` prefix (or `.env`), or passed to `create_app`."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from mini._sse import KEEPALIVE_SECONDS


class ServerSettings(BaseSettings):
    """Limits and security of `mini serve` / `create_app`. Every field has a `MINI_<NAME>` variable."""

    model_config = SettingsConfigDict(env_prefix="MINI_", env_file=".env", extra="ignore")

    # Comma-separated bearer keys (MINI_API_KEYS). Empty: no authentication (fine on 127.0.0.1).
    api_keys: str = ""
    # Request bodies above this are refused with 413 before they are read to the end.
    max_body_bytes: int = 25 * 1024 * 1024
    max_question_chars: int = 4_000
    # Comma-separated origins allowed by CORS (MINI_CORS_ORIGINS); empty: CORS off.
    cors_origins: str = ""
    # Server-side paths may be ingested only under this directory (MINI_INGEST_ROOT); unset: refused.
    ingest_root: str | None = None
    # Chat sessions: history kept per session, at most this many sessions, each forgotten after the TTL.
    max_sessions: int = 1_000
    session_ttl_s: float = 3_600.0
    max_history_turns: int = 10
    # Ingestion jobs run at most this many at a time; finished jobs are kept this long for GET /v1/jobs/{id}.
    max_concurrent_jobs: int = 2
    job_ttl_s: float = 3_600.0
    # The server's own event-loop lag is sampled at this interval (reported in GET /v1/stats).
    lag_sample_s: float = 0.01
    # Streams send a keep-alive comment after this many seconds without an event (MINI_SSE_KEEPALIVE_S), so
    # proxies that cut idle connections keep a long generation open; 0 sends none.
    sse_keepalive_s: float = KEEPALIVE_SECONDS

    def keys(self) -> frozenset[str]:
        return frozenset(k.strip() for k in self.api_keys.split(",") if k.strip())

    def origins(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]
