"""mini-rag 0.1.3's `mini.observability.LangfuseConfig`, kept so its code imports (deprecated: MIGRATING.md).

Tracing is OpenTelemetry now (`mini.tracing`, `ObservabilityConfig(enabled=...)`): spans go to whichever
exporter the application configures, and Langfuse accepts OTLP. This class only keeps 0.1.3's attributes.
"""

from __future__ import annotations

import os

from mini._deprecation import warn_renamed

DEFAULT_HOST = "https://cloud.langfuse.com"  # 0.1.3's default


class LangfuseConfig:
    """0.1.3's Langfuse settings: keys default to LANGFUSE_PUBLIC_KEY / LANGFUSE_SECRET_KEY, the host to
    LANGFUSE_HOST. No Langfuse client is made (`client` is None, `is_enabled()` False)."""

    def __init__(
        self,
        enabled: bool = False,
        public_key: str | None = None,
        secret_key: str | None = None,
        host: str | None = None,
    ) -> None:
        warn_renamed(
            "mini.LangfuseConfig",
            "ObservabilityConfig(enabled=True) and an OpenTelemetry exporter (Langfuse accepts OTLP)",
        )
        self.enabled = enabled
        self.public_key = public_key or os.getenv("LANGFUSE_PUBLIC_KEY")
        self.secret_key = secret_key or os.getenv("LANGFUSE_SECRET_KEY")
        self.host = host or os.getenv("LANGFUSE_HOST", DEFAULT_HOST)
        self.client = None

    def is_enabled(self) -> bool:
        return False

    def flush(self) -> None:
        """Nothing to flush: spans are the OpenTelemetry SDK's."""

    def shutdown(self) -> None:
        """Nothing to shut down."""

    def __repr__(self) -> str:
        return f"LangfuseConfig(enabled={self.enabled}, host={self.host!r})"
