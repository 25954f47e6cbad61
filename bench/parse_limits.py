"""Bounded parsing: a DOCX expansion bomb, and the peak memory of ingesting one large text file.

    python bench/parse_limits.py [--bomb-mib 419] [--text-mb 50] [--compare-src DIR] [--no-write]

Each measurement runs in a fresh process (the peak RSS is the kernel's high-water mark, VmHWM, of that process):
1. the bomb: a .docx whose word/document.xml inflates to --bomb-mib MiB of ordinary paragraphs (the shape of
   the issue's 1.6 MB file that ran 300 s at 2.3 GB), parsed with `parse_bytes`; time to the outcome and peak;
2. a --text-mb MB plain-text file ingested by `Ingestor` into LanceDB in a temp dir, with an in-process fake
   embedder (dimension 384 like the bundled model, and 8 to show the cost of the text alone); "added" is the
   peak minus the RSS before that ingestion (after imports and a warm-up ingestion), "ratio" that over the size.

--compare-src runs the same measurements against another source tree too (for instance `git archive HEAD src |
tar -x -C /tmp/before`, then `--compare-src /tmp/before/src`), stopping a run after --timeout seconds.
Writes the "Bounded parsing" section of BENCHMARKS.md unless --no-write.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

try:  # `python bench/parse_limits.py`; `python -m bench.parse_limits` finds it as bench._common
    from _common import machine, write_section
except ModuleNotFoundError:
    from bench._common import machine, write_section

HEADING = "## Bounded parsing"
READING = """Reading it: the bomb is refused from the zip's central directory (declared sizes, ratio) before
anything is inflated; before, python-docx inflated the whole member and lxml built a tree of it (the issue
measured 300 s and 2.3 GB to the end). For the text file, reading, decoding and chunking now hold about 2x the
file (the bytes are freed once decoded, chunks are made a 1 MB segment at a time, which also made chunking
linear: 50 MB took 12-27 s, now ~1-2 s), but the peak comes later, at the file's single commit: its rows as
Python records (text plus, at 384 dimensions, 1.5 KB of vector per ~750 bytes of text), their Arrow copy, and
LanceDB's `merge_insert`, which buffers its whole input (measured alone: +3.3x the Arrow bytes; `add` of a
streamed reader +0.8x). The rows of one file are written in one commit on purpose (a search sees the old
version or the new one, never half), so the vectors of a whole file are in memory at once: ~2x the file at 384
dimensions before any copy. See docs/security.md, "Bounded parsing"."""
_MiB = 1 << 20


def peak_rss_mb(pid: int | str = "self") -> float:
    """The high-water mark of a process's resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- the inputs ----------------------------------------------------------------------------------------------


def write_bomb(path: Path, mib: int) -> None:
    """A valid .docx whose document.xml is `mib` MiB of paragraphs, streamed through zlib a MiB at a time."""
    from docx import Document

    Document().save(str(path.with_suffix(".template.docx")))
    template = zipfile.ZipFile(path.with_suffix(".template.docx"))
    head, tail = template.read("word/document.xml").split(b"</w:body>")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for info in template.infolist():
            if info.filename != "word/document.xml":
                archive.writestr(info, template.read(info))
        with archive.open("word/document.xml", "w", force_zip64=True) as member:
            member.write(head)
            for block in range(mib):
                paragraph = b"<w:p><w:r><w:t>Section %d: the same sentence again.</w:t></w:r></w:p>" % block
                member.write(paragraph * (_MiB // len(paragraph)))
            member.write(b"</w:body>" + tail)
    path.with_suffix(".template.docx").unlink()


def write_text(path: Path, mb: int) -> None:
    from mini.testing.corpus import document_text

    with path.open("w", encoding="utf-8") as out:
        written, index = 0, 0
        while written < mb * 1_000_000:
            text = document_text(index, 20_000) + "\n\n"
            out.write(text)
            written += len(text)
            index += 1


# --- the children: one measurement each, printed as JSON ----------------------------------------------------


def child_bomb(path: str) -> dict[str, Any]:
    from mini.ingest.loaders import parse_bytes

    data = Path(path).read_bytes()
    started = time.perf_counter()
    try:
        documents = parse_bytes("bomb.docx", data, "docx")
        outcome = f"parsed: {sum(len(d.text) for d in documents):,} characters"
    except Exception as exc:
        outcome = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
    return {"outcome": outcome, "seconds": time.perf_counter() - started, "peak_mb": peak_rss_mb()}


class FakeEmbedder:
    """Cheap, deterministic vectors of `dimension` floats (every value written, as a real model would)."""

    def __init__(self, dimension: int) -> None:
        self.name = f"fake-{dimension}"
        self._dimension = dimension

    @property
    def dimension(self) -> int:
        return self._dimension

    async def embed(self, texts: Any, *, input_type: str = "document") -> Any:
        import numpy as np

        out = np.full((len(texts), self._dimension), 1.0 / self._dimension**0.5, dtype=np.float32)
        for row, text in enumerate(texts):
            out[row, hash(text) % self._dimension] = 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    async def aclose(self) -> None:
        pass


def child_text(path: str, dimension: int) -> dict[str, Any]:
    from mini import EmbeddingModel, VectorStore
    from mini.ingest.pipeline import Ingestor
    from mini.testing.corpus import document_text

    async def ingest(store_dir: str, item: Path) -> Any:
        model = EmbeddingModel(embedder=FakeEmbedder(dimension))  # type: ignore[arg-type]
        return await Ingestor(VectorStore(store_dir, collection_name="bench"), model).run([item])

    with tempfile.TemporaryDirectory() as tmp:
        warm = Path(tmp) / "warm.txt"
        warm.write_text(document_text(0, 5000))
        asyncio.run(ingest(tmp + "/store", warm))  # imports, the table, the splitter: outside the measurement
        before = current_rss_mb()
        started = time.perf_counter()
        report = asyncio.run(ingest(tmp + "/store", Path(path)))
        seconds = time.perf_counter() - started
    assert not report.failures, report.failures
    return {
        "before_mb": before,
        "peak_mb": peak_rss_mb(),
        "seconds": seconds,
        "chunks": report.chunks_added,
        "parse_s": report.timings_ms.get("parse", 0.0) / 1000,
    }


# --- the parent ----------------------------------------------------------------------------------------------


def measure(src: str | None, args: list[str], timeout: float) -> dict[str, Any]:
    """Run one child against the source tree `src` (None: this one); on timeout, stop it and report so."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "MINI_"))}
    if src:
        env["PYTHONPATH"] = src  # ahead of the installed (editable) package
    command = [sys.executable, __file__, "--child", *args]
    started = time.perf_counter()
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as child:
        try:
            out, err = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            peak = peak_rss_mb(child.pid)
            child.kill()
            child.communicate()
            return {
                "outcome": f"still running after {timeout:.0f} s (stopped)",
                "seconds": None,
                "peak_mb": peak,
            }
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{err[-3000:]}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result.setdefault("wall_s", time.perf_counter() - started)
    return result


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--bomb-mib", type=int, default=419)
    options.add_argument("--text-mb", type=int, default=50)
    options.add_argument("--dimensions", default="384,8")
    options.add_argument(
        "--compare-src", help="another source tree's src/ to measure too (e.g. before a change)"
    )
    options.add_argument("--compare-label", default="before", help="the compared tree's name in the tables")
    options.add_argument("--timeout", type=float, default=120.0)
    options.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    options.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = options.parse_args()
    if args.child:
        kind, *rest = args.child
        result = child_bomb(rest[0]) if kind == "bomb" else child_text(rest[0], int(rest[1]))
        print(json.dumps(result))
        return

    trees = [("this tree", None)] + ([(args.compare_label, args.compare_src)] if args.compare_src else [])
    with tempfile.TemporaryDirectory() as tmp:
        bomb, text = Path(tmp) / "bomb.docx", Path(tmp) / "big.txt"
        write_bomb(bomb, args.bomb_mib)
        write_text(text, args.text_mb)
        bomb_mb, text_mb = bomb.stat().st_size / 1e6, text.stat().st_size / 1e6
        bomb_rows, text_rows = [], []
        for label, src in trees:
            print(f"{label}: bomb ...", file=sys.stderr, flush=True)
            found = measure(src, ["bomb", str(bomb)], args.timeout)
            seconds = "-" if found["seconds"] is None else f"{found['seconds']:.2f}"
            bomb_rows.append(f"| {label} | {found['outcome'][:110]} | {seconds} | {found['peak_mb']:.0f} |")
            for dimension in [int(d) for d in args.dimensions.split(",")]:
                print(
                    f"{label}: {args.text_mb} MB text, dimension {dimension} ...", file=sys.stderr, flush=True
                )
                found = measure(src, ["text", str(text), str(dimension)], args.timeout * 5)
                added = found["peak_mb"] - found["before_mb"]
                text_rows.append(
                    f"| {label} | {dimension} | {found['chunks']:,} | {found['seconds']:.1f} | "
                    f"{found['parse_s']:.1f} | {found['before_mb']:.0f} | {found['peak_mb']:.0f} | "
                    f"{added:.0f} | **{added / text_mb:.1f}x** |"
                )
    command = "python bench/parse_limits.py" + (" --compare-src DIR" if args.compare_src else "")
    section = "\n".join(
        [
            HEADING,
            "",
            f"    {command}",
            "",
            f"{machine()} Peak RSS is each fresh process's high-water mark (VmHWM), imports included.",
            "",
            f"A {bomb_mb:.1f} MB .docx whose document.xml inflates to {args.bomb_mib} MiB of paragraphs "
            "(`parse_bytes`, as the CLI and the server's uploads use it):",
            "",
            "| code | outcome | s | peak RSS MB |",
            "|---|---|---:|---:|",
            *bomb_rows,
            "",
            f"A {text_mb:.0f} MB plain-text file through `Ingestor` into LanceDB (fake in-process embedder; "
            '"added" = peak - RSS before this ingestion):',
            "",
            "| code | dim | chunks | wall s | parse+chunk s | before MB | peak MB | added MB | added / file |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
            *text_rows,
            "",
            READING,
        ]
    )
    print(section)
    if not args.no_write:
        write_section(section, HEADING)
        print("BENCHMARKS.md updated", file=sys.stderr)


if __name__ == "__main__":
    main()
