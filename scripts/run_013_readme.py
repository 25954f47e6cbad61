"""Acceptance walk for issue 19: run every Python block of mini-rag 0.1.3's README against this tree.

Usage (from the repository root; the wheel holds the README and the sample PDF the blocks use):
    pip download mini-rag==0.1.3 --no-deps -d .cache/
    .venv/bin/python scripts/run_013_readme.py [--wheel .cache/mini_rag-0.1.3-py3-none-any.whl] [--only 3,11] [--keep]

What it does, and why this way:
- Extracts every ```python block of 0.1.3's README (the wheel's METADATA) in order and numbers them from 1.
- Starts the project's simulator twice: the "OpenAI" endpoint (dim=1536, because the README pairs
  `EmbeddingModel()` = text-embedding-3-small with `dimension=1536`), and a second one on 127.0.0.1:8080, the
  address the README uses for "a local model (e.g., llama.cpp)". Both answer in a few milliseconds.
- Sets the variables 0.1.3's `.env` documented: OPENAI_API_KEY, OPENAI_BASE_URL, EMBEDDING_MODEL, MILVUS_URI
  (a Milvus Lite file in the working dir). MILVUS_TOKEN, COHERE_API_KEY and LANGFUSE_* stay unset.
- Creates one working dir with every file the blocks name (copies of the sample PDF, a real .docx, a .txt) and
  runs each block unmodified, in a fresh interpreter, in that dir: one session (one simulator, one Lite file).
- A block that uses names from earlier blocks (a fragment) runs after the README blocks it depends on (its
  prefix); where the README never defines a name, a one-line stub is added and reported. A few blocks get a
  suffix that exercises what they only define (the FastAPI app) or stdin for `input()`.
- Blocks that need something beyond the simulator and Milvus Lite (a Cohere key, CUDA/torch models, OCR, a
  remote Milvus server) are still run, so the report shows how they fail, but are classified as such.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from mini.testing.sim.launcher import SimServer

DEFAULT_WHEEL = Path(".cache/mini_rag-0.1.3-py3-none-any.whl")
README_MEMBER = "mini_rag-0.1.3.dist-info/METADATA"
PDF_MEMBER = "mini/documents/eb_test.pdf"
PYTHON = Path(sys.executable)
SRC = Path(__file__).resolve().parent.parent / "src"
TIMEOUT_S = 60.0
LOCAL_MODEL_PORT = 8080  # README: `base_url="http://localhost:8080/v1"` (llama.cpp)

PDF_NAMES = [
    "document.pdf",
    "document1.pdf",
    "doc1.pdf",
    "doc2.pdf",
    "my_document.pdf",
    "technical_document.pdf",
    "faq.pdf",
    "manual.pdf",
    "path/to/document.pdf",
    "path/to/your/document.pdf",
    "docs/employee_handbook.pdf",
    "docs/policies.pdf",
    "docs/benefits.pdf",
    "papers/paper1.pdf",
    "papers/paper2.pdf",
    "papers/paper3.pdf",
    "documents/eb_test.pdf",
]
DOCX_NAMES = ["doc2.docx", "document2.docx"]
TEXT_NAMES = {"doc3.txt": "Key findings: the education budget grew by ten percent in 2024.\n"}


@dataclass
class Plan:
    """How one block is run and what it needs beyond the simulator and Milvus Lite (empty: nothing)."""

    needs: str = ""
    prefix: list[int] = field(default_factory=list)  # README blocks run first, in this order
    stub: str = ""  # code the README never gives (a name it leaves undefined), added after the prefix
    suffix: str = ""  # code after the block that exercises what the block only defines
    stdin: str = ""
    note: str = ""
    edits: list[tuple[str, str]] = field(
        default_factory=list
    )  # variants only: (old, new) in the block's text
    env: dict[str, str] = field(default_factory=dict)  # variants only: extra environment


SETUP = 4  # the README's "Basic usage" block: defines embedding_model, vector_store, rag
SIGNATURES = "API reference listing (signatures without bodies): not executable Python"

PLANS: dict[int, Plan] = {
    5: Plan(prefix=[SETUP], note="Langfuse keys unset: tracing accepted, exports nothing"),
    7: Plan(needs="OCR (image.png)", note="image.png is a placeholder PNG"),
    8: Plan(prefix=[6], note="`text` from block 6"),
    9: Plan(prefix=[6, 8], note="`chunks` from blocks 6+8; localhost:8080 is a second simulator"),
    10: Plan(needs="a remote Milvus server (uri=https://your-milvus-instance.com)", prefix=[6, 8, 9]),
    11: Plan(prefix=[SETUP]),
    12: Plan(prefix=[SETUP]),
    13: Plan(prefix=[SETUP], note="constructs only (api.openai.com is never called)"),
    14: Plan(needs="a Cohere key (COHERE_API_KEY) and Langfuse keys", prefix=[SETUP]),
    18: Plan(prefix=[SETUP]),
    19: Plan(needs="a Cohere key", prefix=[SETUP, 18], note="constructs only"),
    20: Plan(needs="CUDA + torch model (cross-encoder download)", prefix=[SETUP, 18]),
    21: Plan(needs="a Cohere key", prefix=[SETUP, 18], note="constructs only"),
    22: Plan(prefix=[SETUP]),
    23: Plan(
        prefix=[SETUP, 22],
        stub="vector_store_hybrid = vector_store  # README never defines it: block 22's store",
    ),
    24: Plan(
        prefix=[SETUP, 11],
        stub=(
            "from mini.store import VectorStore as _StoreOf013\n"
            "store = _StoreOf013(uri=os.getenv('MILVUS_URI'), collection_name='my_docs', dimension=1536)\n"
            "embedding = embedding_model.embed_query('What are the key findings?')"
        ),
        suffix="print('results:', len(results)); assert results and all("
        "r['metadata'].get('year') == 2024 for r in results)",
        note="`store`/`embedding` stubbed: block 11's collection (metadata year/category)",
    ),
    25: Plan(
        suffix=textwrap.dedent(
            """
            from fastapi.testclient import TestClient
            with TestClient(app) as client:
                reply = client.post("/ask", json={"question": "What is the budget?"})
            print(reply.status_code, str(reply.json())[:200])
            assert reply.status_code == 200, reply.text
            """
        ),
        note="suffix: POST /ask through FastAPI's TestClient (sync query inside an async endpoint)",
    ),
    26: Plan(stub="import os  # the block uses os without importing it"),
    28: Plan(stdin="What are the benefits?\nquit\n", note="stdin: one question, then quit"),
    29: Plan(prefix=[SETUP]),
    30: Plan(prefix=[2], stub="import os", note="imports from block 2"),
    32: Plan(needs="a Cohere key and a torch cross-encoder model", note="loops over cohere, local, llm"),
}
for _number in range(33, 39):
    PLANS[_number] = Plan(needs=SIGNATURES)

# Diagnostic variants (NOT unmodified): what a block needing more than sim + Lite does once that need is removed.
VARIANTS: dict[str, tuple[int, Plan]] = {
    "7b": (7, Plan(edits=[('    "image.png"\n', "")], note="variant: without image.png (no OCR)")),
    "10b": (
        10,
        Plan(
            prefix=[6, 8, 9],
            edits=[
                ('"https://your-milvus-instance.com"', 'os.getenv("MILVUS_URI")'),
                ("embeddings=embeddings,", "embeddings=embeddings[:2],"),
                ("from mini.store import VectorStore", "import os\nfrom mini.store import VectorStore"),
            ],
            note="variant: Milvus Lite uri, 2 embeddings for the 2 texts",
        ),
    ),
    "14b": (
        14,
        Plan(prefix=[SETUP], env={"COHERE_API_KEY": "placeholder"}, note="variant: COHERE_API_KEY set"),
    ),
    "24b": (
        24,
        Plan(
            prefix=[SETUP, 11],
            stub="store = vector_store  # block 4's top-level mini.VectorStore\n"
            "embedding = embedding_model.embed_query('What are the key findings?')",
            suffix="print('results:', len(results))",
            note="variant: `store` is `from mini import VectorStore` (block 4)",
        ),
    ),
}


def extract_blocks(readme: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", readme, flags=re.S | re.M)


def make_workdir(root: Path, sample_pdf: bytes) -> None:
    for name in PDF_NAMES:
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(sample_pdf)
    import docx  # python-docx: a real .docx, so the placeholder parses

    for name in DOCX_NAMES:
        document = docx.Document()
        document.add_heading("Research notes", level=1)
        document.add_paragraph("The key findings concern the railway budget and education spending in 2024.")
        document.save(str(root / name))
    for name, text in TEXT_NAMES.items():
        (root / name).write_text(text)
    # A 1x1 PNG: the loader has no OCR, so this shows how an image is reported.
    (root / "image.png").write_bytes(
        bytes.fromhex(
            "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
            "0000000d4944415478da63f8ffff3f0005fe02fea7d6a4f40000000049454e44ae426082"
        )
    )


def first_line(code: str) -> str:
    for line in code.splitlines():
        text = line.strip()
        if text and not text.startswith("#"):
            return text[:60]
    return code.strip().splitlines()[0][:60] if code.strip() else "(empty)"


def last_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)\b", line) or line.startswith(
            "AssertionError"
        ):
            return line.strip()[:220]
    return (lines[-1].strip() if lines else "(no output)")[:220]


def run_block(
    label: str, number: int, blocks: list[str], plan: Plan, workdir: Path, env: dict[str, str]
) -> tuple[str, str]:
    parts = [blocks[n - 1] for n in plan.prefix]
    if plan.stub:
        parts.append(plan.stub)
    code = blocks[number - 1]
    for old, new in plan.edits:
        if old not in code:
            return "failed", f"variant edit not applicable: {old!r}"
        code = code.replace(old, new)
    parts.append(code)
    if plan.suffix:
        parts.append(plan.suffix)
    script = workdir / f"block_{label}.py"
    script.write_text("\n\n".join(parts))
    try:
        done = subprocess.run(
            [str(PYTHON), script.name],
            cwd=workdir,
            env={**env, **plan.env},
            input=plan.stdin,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return "failed", f"timeout after {TIMEOUT_S:.0f} s"
    log = workdir / f"block_{label}.log"
    log.write_text(f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}")
    if done.returncode == 0:
        # The new `index_document(path)` reports a failed file in its IngestReport and the log, not by raising:
        # a block that "passed" with such a line did not do what it says.
        logged = [line for line in done.stderr.splitlines() if line.startswith("ingest failed")]
        if logged:
            return "failed", "exit 0 but " + logged[0][:200]
        return "ok", (done.stdout.strip().splitlines() or [""])[-1][:120]
    return "failed", last_error_line(done.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, default=DEFAULT_WHEEL, help="mini-rag 0.1.3's wheel")
    parser.add_argument("--only", default="", help="comma-separated block numbers")
    parser.add_argument("--keep", action="store_true", help="keep the working dir (scripts and logs)")
    args = parser.parse_args()

    if not args.wheel.is_file():
        print(
            f"{args.wheel}: not found; get it with: pip download mini-rag==0.1.3 --no-deps -d {args.wheel.parent}",
            file=sys.stderr,
        )
        return 2
    with zipfile.ZipFile(args.wheel) as wheel:
        blocks = extract_blocks(wheel.read(README_MEMBER).decode())
        sample_pdf = wheel.read(PDF_MEMBER)
    wanted = {int(n) for n in args.only.split(",") if n} or set(range(1, len(blocks) + 1))
    workdir = Path(tempfile.mkdtemp(prefix="mini-013-readme-"))
    make_workdir(workdir, sample_pdf)

    with (
        SimServer(dim=1536, chat_ms=5, embed_ms=1) as openai_sim,
        SimServer(port=LOCAL_MODEL_PORT, dim=1536, chat_ms=5, embed_ms=1) as _local_model,
    ):
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("MINI_", "OPENAI_", "MILVUS_", "COHERE_", "LANGFUSE_", "EMBEDDING_"))
        }
        env.update(
            PYTHONPATH=str(SRC),
            OPENAI_API_KEY="sk-sim",
            OPENAI_BASE_URL=openai_sim.base_url,
            EMBEDDING_MODEL="text-embedding-3-small",
            MILVUS_URI=str(workdir / "milvus_demo.db"),
            HOME=str(workdir),  # nothing the blocks write (caches, .env lookups) lands in the real home
            PYTHONWARNINGS="default::DeprecationWarning",
        )
        rows = []
        for number in sorted(wanted):
            plan = PLANS.get(number, Plan())
            code = blocks[number - 1]
            if plan.needs == SIGNATURES:
                rows.append((number, first_line(code), "not run", "", "", SIGNATURES))
                continue
            status, detail = run_block(f"{number:02d}", number, blocks, plan, workdir, env)
            how = []
            if plan.prefix:
                how.append("after block " + "+".join(map(str, plan.prefix)))
            if plan.stub:
                how.append("stub: " + plan.stub.splitlines()[-1].split("#")[0].strip()[:50])
            if plan.note:
                how.append(plan.note)
            rows.append((number, first_line(code), status, detail, "; ".join(how), plan.needs))
            print(f"[{number:2d}] {status}: {detail}", file=sys.stderr, flush=True)
        for label, (number, plan) in VARIANTS.items():
            if number in wanted:
                status, detail = run_block(label, number, blocks, plan, workdir, env)
                how = "; ".join(
                    filter(
                        None,
                        ["after block " + "+".join(map(str, plan.prefix)) if plan.prefix else "", plan.note],
                    )
                )
                rows.append((label, first_line(blocks[number - 1]), status, detail, how, ""))
                print(f"[{label}] {status}: {detail}", file=sys.stderr, flush=True)

    print("| # | first line | result | detail | how run | needs beyond sim + Milvus Lite |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        number, line, status, detail, how, *needs = row
        cell = lambda s: str(s).replace("|", "\\|")  # noqa: E731 - table cell escaping
        print(
            f"| {number} | `{cell(line)}` | {status} | {cell(detail)} | {cell(how)} | {cell(needs[0] if needs else '')} |"
        )
    if args.keep:
        print(f"\nworking dir (scripts block_NN.py, logs block_NN.log): {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
