"""Packaging: `python -m mini`, one source for the version, the licence file declared by pyproject.toml."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import mini

REPO = Path(__file__).resolve().parents[1]


def test_python_dash_m_mini_is_the_cli() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run(
        [sys.executable, "-m", "mini", "--version"], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"mini-rag {mini.__version__}"


def test_the_version_has_one_source() -> None:
    # The installed metadata is built from src/mini/_version.py (hatch's version source): they agree.
    assert importlib.metadata.version("mini-rag") == mini.__version__
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    assert project["tool"]["hatch"]["version"]["path"] == "src/mini/_version.py"
    # No other file spells the version out.
    pattern = re.compile(re.escape(mini.__version__))
    spelled = [
        str(path.relative_to(REPO))
        for folder in ("src", "tests", "bench", "docs", "examples")
        for path in (REPO / folder).rglob("*")
        if path.suffix in (".py", ".md", ".toml", ".txt") and pattern.search(path.read_text(errors="ignore"))
    ]
    assert spelled == ["src/mini/_version.py"]


def test_the_licence_is_in_the_repository_and_declared() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    assert "License :: OSI Approved :: MIT License" not in project["classifiers"]  # PEP 639: the expression
    assert {"Homepage", "Repository", "Issues"} <= set(project["urls"])
