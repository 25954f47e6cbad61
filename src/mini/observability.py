"""mini-rag 0.1.3's `mini.observability.LangfuseConfig`, kept so its code imports (deprecated: MIGRATING.md).

Tracing is OpenTelemetry now (`mini.tracing`, `ObservabilityConfig(enabled=...)`); Langfuse takes it over OTLP
(`mini.tracing.configure_langfuse`, or its keys in the environment). This class keeps 0.1.3's attributes.
"""

from __future__ import annotations

import os
from typing import Any

from mini._deprecation import warn_renamed

DEFAULT_HOST = "https://cloud.langfuse.com"  # 0.1.3's default


class LangfuseConfig:
    """0.1.3's Langfuse settings: keys default to LANGFUSE_PUBLIC_KEY / LANGFUSE_SECRET_KEY, the host to
    LANGFUSE_HOST. `enabled=True` with both keys exports every span to that Langfuse, as 0.1.3 did, through
    `mini.tracing.configure_langfuse` (OpenTelemetry; `client` is that tracer provider, or None)."""

    def __init__(
        self,
        enabled: bool = False,
        public_key: str | None = None,
        secret_key: str | None = None,
        host: str | None = None,
    ) -> None:
        warn_renamed(
            "mini.LangfuseConfig",
            "LANGFUSE_PUBLIC_KEY/LANGFUSE_SECRET_KEY/LANGFUSE_HOST or mini.tracing.configure_langfuse(...)",
        )
        self.enabled = enabled
        self.public_key = public_key or os.getenv("LANGFUSE_PUBLIC_KEY")
        self.secret_key = secret_key or os.getenv("LANGFUSE_SECRET_KEY")
        self.host = host or os.getenv("LANGFUSE_HOST", DEFAULT_HOST)
        self.client: Any = None
        if enabled and self.public_key and self.secret_key:
            from mini import tracing

            self.client = tracing.configure_langfuse(
                public_key=self.public_key, secret_key=self.secret_key, host=self.host
            )

    def is_enabled(self) -> bool:
        return self.client is not None

    def flush(self) -> None:
        """Send the spans not exported yet."""
        if self.client is not None:
            self.client.force_flush()

    def shutdown(self) -> None:
        """Flush and stop exporting."""
        if self.client is not None:
            self.client.shutdown()

    def __repr__(self) -> str:
        return f"LangfuseConfig(enabled={self.enabled}, host={self.host!r})"
