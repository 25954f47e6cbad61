"""Fixtures of the URL-fetching tests: the local site, and no proxy between the fetcher and it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.ingest.web_site import Site, clear_proxy_env, running_site


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_proxy_env(monkeypatch)


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    async with running_site() as site:
        yield site
