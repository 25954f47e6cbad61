"""Without its framework installed, each integration's import names the extra to install."""

from __future__ import annotations

import importlib
import sys

import pytest

from mini.errors import MissingDependencyError


@pytest.mark.parametrize(
    ("module", "framework", "extra"),
    [
        ("mini.integrations.langchain", "langchain_core.retrievers", "langchain"),
        ("mini.integrations.llamaindex", "llama_index.core.retrievers", "llamaindex"),
        ("mini.integrations.mcp", "mcp.server.mcpserver", "mcp"),
    ],
)
def test_import_without_the_framework_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, module: str, framework: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, framework, None)  # what `import` sees when the package is missing
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(MissingDependencyError, match=rf"pip install \"mini-rag\[{extra}\]\"") as caught:
        importlib.import_module(module)
    assert caught.value.extra == extra
