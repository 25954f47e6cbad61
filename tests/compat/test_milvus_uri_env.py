"""0.1.3's `.env` sets MILVUS_URI to a Milvus Lite file; pymilvus reads the same variable when it is imported.

Before the fix, `import pymilvus` failed with "Illegal uri: [./milvus_demo.db], expected form 'http[s]://...'"
(the message quoted in issue 19), so every store call failed once MILVUS_URI named a `.db` file. Each case runs
in a fresh interpreter: pymilvus reads the variable only on its first import in a process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

WRITE_THEN_COUNT = """
import os, mini
store = mini.VectorStore(os.path.abspath("kb.db"), collection_name="c")
print(store.count())
store.upsert(ids=["a"], embeddings=[[0.1, 0.2, 0.3]], texts=["hello"])
print(store.count(), os.environ.get("MILVUS_URI"))
"""


def run_in(directory: Path, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MILVUS_", "MINI_"))}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=directory,
        env={**clean, "PYTHONPATH": str(SRC), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_lite_path_in_milvus_uri_does_not_break_pymilvus_and_is_the_0_1_3_default_store(
    tmp_path: Path,
) -> None:
    code = (
        WRITE_THEN_COUNT
        + """
import warnings
warnings.simplefilter("ignore", DeprecationWarning)
from mini.store import VectorStore
old = VectorStore(collection_name="docs")  # 0.1.3: the store at MILVUS_URI
print(old.count())
old.insert(embeddings=[[1.0, 0.0], [0.0, 1.0]], texts=["a", "b"], metadata=[{"k": 1}, {"k": 2}])
print(old.count(), [r["text"] for r in old.search(query_embedding=[1.0, 0.0], top_k=1)])
"""
    )
    done = run_in(tmp_path, code, MILVUS_URI="./milvus_demo.db")
    assert done.returncode == 0, done.stderr[-2000:]
    # The variable is restored after pymilvus loaded; the 0.1.3 store found its file through it.
    assert done.stdout.split("\n")[:4] == ["0", "1 ./milvus_demo.db", "0", "2 ['a']"]
    assert (tmp_path / "milvus_demo.db").exists()


def test_lite_path_in_a_dotenv_file_does_not_break_pymilvus(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("MILVUS_URI=./milvus_demo.db\n")  # pymilvus calls load_dotenv() on import
    done = run_in(tmp_path, WRITE_THEN_COUNT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:2] == ["0", "1 None"]
