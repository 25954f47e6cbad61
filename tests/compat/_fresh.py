"""Each compat test sees the once-per-process deprecation warnings afresh."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mini import _deprecation


@pytest.fixture(autouse=True)
def fresh_warnings() -> Iterator[None]:
    _deprecation.reset()
    yield
    _deprecation.reset()
