"""The HTTP server: `create_app(rag)` (FastAPI) and `mini serve`. Needs the `server` extra."""

from mini.server.app import create_app
from mini.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]
