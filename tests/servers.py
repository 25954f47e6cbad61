"""What the server tests share: the sample corpus indexed through the simulator, and the app served on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mini import AgenticRAG
from mini.server import ServerSettings, create_app
from mini.testing.server_thread import ServerThread
from tests.conftest import SAMPLE_CORPUS
from tests.query.conftest import make_rag


def indexed_rag(sim: Any, store_dir: Path) -> AgenticRAG:
    """The sample corpus indexed through the simulator (sync twin: usable by sync and async tests alike), its
    stats reset afterwards; no retries, so a provider failure reaches the server at once."""
    rag = make_rag(sim, store_dir, max_retries=0)
    report = rag.index_documents([SAMPLE_CORPUS])
    assert report.ok, report.failures
    sim.reset()
    return rag


def serve(rag: AgenticRAG, **settings: Any) -> ServerThread:
    """The full app over `rag`, with these `ServerSettings`; use as a context manager."""
    return ServerThread(create_app(rag, settings=ServerSettings(**settings)))
