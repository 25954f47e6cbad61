"""Bounded parsing (issue 18, item 4): expansion bombs, lying zip headers, deep nesting and text caps fail with
`DocumentLimitError` while the file is read, memory stays low, and any depth of HTML parses."""

from __future__ import annotations

import asyncio
import io
import json
import time
import tracemalloc
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from mini import AgenticRAG, EmbeddingModel, VectorStore
from mini.errors import DocumentLimitError, DocumentParseError
from mini.ingest.limits import ParseLimits
from mini.ingest.loaders import parse_bytes
from mini.ingest.pipeline import Ingestor
from mini.server import ServerSettings, create_app
from mini.testing.server_thread import ServerThread
from tests.ingest.test_loaders import make_pdf

docx = pytest.importorskip("docx")

KEY = "sim"
_MiB = 1 << 20
DOCUMENT_XML = "word/document.xml"


# --- building DOCX files: a real one from python-docx, its document.xml padded by streaming -----------------


def template_docx(text: str = "Padded but valid.") -> bytes:
    document = docx.Document()
    document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def padded_docx(
    padding_mib: int, *, understate: bool = False, extra: dict[str, bytes] | None = None
) -> bytes:
    """The template with `padding_mib` MiB of whitespace after the root element of its document.xml (still
    valid XML), streamed through zlib a MiB at a time so the test never holds the expanded text.

    `understate`: the central directory then declares only the unpadded XML (with its CRC), the way a crafted
    file lies to a reader that trusts the header; zipfile reads members by the directory."""
    template = zipfile.ZipFile(io.BytesIO(template_docx()))
    xml = template.read(DOCUMENT_XML)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for info in template.infolist():
            if info.filename != DOCUMENT_XML:
                archive.writestr(info, template.read(info))
        for name, content in (extra or {}).items():
            archive.writestr(name, content)
        member = zipfile.ZipInfo(DOCUMENT_XML)
        member.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(member, "w", force_zip64=True) as stream:
            stream.write(xml)
            block = b" " * _MiB
            for _ in range(padding_mib):
                stream.write(block)
        if understate:
            member.file_size, member.CRC = len(xml), zlib.crc32(xml)
    return out.getvalue()


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """document.xml: 80 MiB of XML (over the 64 MiB member limit) in ~80 KB of deflate; built once."""
    data = padded_docx(80)
    assert len(data) < 150_000
    return data


@contextmanager
def python_memory_peak() -> Iterator[list[int]]:
    """The peak of Python allocations (bytes objects included: zlib's output is one) inside the block."""
    peak: list[int] = []
    tracemalloc.start()
    try:
        yield peak
    finally:
        peak.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


# --- DOCX and zip containers --------------------------------------------------------------------------------


def test_docx_expansion_bomb_is_refused_from_the_zip_directory_without_inflating_it(bomb: bytes) -> None:
    with python_memory_peak() as peak, pytest.raises(DocumentLimitError) as info:
        parse_bytes("bomb.docx", bomb, "docx")
    assert info.value.limit == "max_member_bytes"
    assert "member 'word/document.xml' expands to 83,8" in info.value.reason  # 80 MiB + the XML
    assert "ParseLimits(max_member_bytes=...)" in info.value.reason
    assert peak[0] < 4 * _MiB  # python-docx would have read all 80 MiB at once


def test_a_zip_header_that_understates_a_member_is_refused_after_bounded_inflating() -> None:
    # The directory says document.xml is ~1 KB; it inflates to 16 MiB. CPython's ZipFile.read inflates a member
    # whole and only then cuts it to the declared size (the CRC matches the cut), so python-docx parsed this
    # file "fine" after holding all 16 MiB; the check inflates it in 1 MiB steps and refuses it.
    liar = padded_docx(16, understate=True)
    with zipfile.ZipFile(io.BytesIO(liar)) as archive:
        declared = archive.getinfo(DOCUMENT_XML).file_size
        assert declared < 2_000
        assert len(archive.read(DOCUMENT_XML)) == declared  # zipfile believes the header
    with (
        python_memory_peak() as peak,
        pytest.raises(DocumentLimitError, match="expands past the size its header"),
    ):
        parse_bytes("liar.docx", liar, "docx")
    assert peak[0] < 4 * _MiB


@pytest.mark.parametrize(
    ("padding_mib", "limits", "limit"),
    [
        (2, ParseLimits(), "max_compression_ratio"),  # 2 MiB of whitespace deflates ~1000:1
        (0, ParseLimits(max_expanded_bytes=60_000), "max_expanded_bytes"),  # the members together
    ],
)
def test_docx_compression_ratio_and_total_expansion_are_limited(
    padding_mib: int, limits: ParseLimits, limit: str
) -> None:
    filler = {f"word/media/filler{i}.bin": bytes(range(256)) * 100 for i in range(3)}  # 3 x 25.6 KB
    with pytest.raises(DocumentLimitError) as info:
        parse_bytes("big.docx", padded_docx(padding_mib, extra=filler), "docx", limits=limits)
    assert info.value.limit == limit
    assert f"ParseLimits({limit}=...)" in str(info.value)


def test_a_padded_docx_within_the_limits_still_parses() -> None:
    [document] = parse_bytes(
        "ok.docx", padded_docx(1), "docx", limits=ParseLimits(max_compression_ratio=2000)
    )
    assert document.text == "Padded but valid."


def test_docx_text_is_capped() -> None:
    data = template_docx("word " * 1000)
    with pytest.raises(DocumentLimitError, match="more than 100 characters") as info:
        parse_bytes("long.docx", data, "docx", limits=ParseLimits(max_text_chars=100))
    assert info.value.limit == "max_text_chars"


def test_a_zip_member_with_an_unsupported_compression_method_is_refused() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("word/document.xml", b"<x/>" * 100, compress_type=zipfile.ZIP_BZIP2)
    with pytest.raises(DocumentParseError, match="unsupported compression method"):
        parse_bytes("odd.docx", out.getvalue(), "docx")


# --- PDF ----------------------------------------------------------------------------------------------------


def test_pdf_text_cap_stops_at_the_page_that_crosses_it() -> None:
    pdf = make_pdf([["a" * 60] * 10 for _ in range(5)])  # ~600 characters a page
    with pytest.raises(DocumentLimitError, match="characters of text by page 2") as info:
        parse_bytes("long.pdf", pdf, "pdf", limits=ParseLimits(max_text_chars=1000))
    assert info.value.limit == "max_text_chars"
    assert len(parse_bytes("long.pdf", pdf, "pdf")) == 5  # the defaults read it all


def test_pdf_page_count_is_limited_before_any_page_is_read() -> None:
    pdf = make_pdf([["page"]] * 3)
    with pytest.raises(DocumentLimitError, match="3 pages, over the limit of 2") as info:
        parse_bytes("pages.pdf", pdf, "pdf", limits=ParseLimits(max_pdf_pages=2))
    assert info.value.limit == "max_pdf_pages"


# --- HTML ---------------------------------------------------------------------------------------------------


def test_html_nested_100000_deep_parses_and_keeps_its_text() -> None:
    depth = 100_000
    html = (
        "<html><head><title>Deep</title></head><body><h1>Top</h1>"
        + "<div>" * depth
        + "<p>deep <b>inside</b></p>"
        + "</div>" * depth
        + "<p>After the nest.</p></body></html>"
    )
    [document] = parse_bytes("deep.html", html.encode(), "html")  # RecursionError in markdownify before
    assert document.text.startswith("# Top")
    assert "deep inside" in document.text and document.text.endswith("After the nest.")
    assert document.metadata["title"] == "Deep"


def test_html_structure_is_kept_up_to_the_depth_limit() -> None:
    html = "<div>" * 50 + "<h2>Heading</h2><ul><li>one</li><li>two</li></ul>" + "</div>" * 50
    [document] = parse_bytes("nested.html", html.encode(), "html")
    assert document.text == "## Heading\n\n* one\n* two"


def test_html_larger_than_the_limit_is_refused_before_parsing() -> None:
    with pytest.raises(DocumentLimitError, match=r"ParseLimits\(max_html_bytes=\.\.\.\)") as info:
        parse_bytes(
            "big.html", b"<p>" + b"x" * 5000 + b"</p>", "html", limits=ParseLimits(max_html_bytes=4096)
        )
    assert info.value.limit == "max_html_bytes"


# --- JSON ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("file_type", ["json", "jsonl"])
def test_json_nested_100000_deep_is_a_limit_error_not_a_recursion_error(file_type: str) -> None:
    depth = 100_000
    value = "[" * depth + "1" + "]" * depth
    data = (value if file_type == "json" else '{"text": "a", "x": ' + value + "}\n").encode()
    with pytest.raises(DocumentLimitError, match="JSON nested too deeply"):
        parse_bytes(f"deep.{file_type}", data, file_type)


def test_deep_json_is_not_pretty_printed_into_a_much_larger_text() -> None:
    # Indentation grows with depth on every line: 40 levels of lists around 200,000 numbers would be
    # ~17 MB of text from a 0.6 MB file. Too deep to indent cheaply: it is kept on one line.
    value: Any = [1] * 200_000
    for _ in range(40):
        value = [value]
    data = json.dumps(value).encode()
    [document] = parse_bytes("deep.json", data, "json")
    assert len(document.text) <= len(data)
    shallow = json.dumps({"a": [1, 2]}).encode()
    assert parse_bytes("shallow.json", shallow, "json")[0].text == json.dumps({"a": [1, 2]}, indent=2)


# --- through the pipeline and the server --------------------------------------------------------------------


async def test_ingestor_reports_a_file_over_a_limit_as_failed_and_ingests_the_rest(
    sim: Any, tmp_path: Path, bomb: bytes
) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "bomb.docx").write_bytes(bomb)
    (tmp_path / "docs" / "long.pdf").write_bytes(make_pdf([["a" * 60] * 10] * 3))
    (tmp_path / "docs" / "notes.md").write_text("# Notes\n\nThe ferry leaves at noon.\n")
    model = EmbeddingModel("openai:sim-embed", base_url=sim.base_url, api_key=KEY, dimension=384)
    store = VectorStore(str(tmp_path / "store"), collection_name="t")
    ingestor = Ingestor(store, model, parse_limits=ParseLimits(max_text_chars=1000))
    try:
        report = await ingestor.run([tmp_path / "docs"])
    finally:
        await model.aclose()
    failed = {Path(f.path).name: f for f in report.failures}
    assert set(failed) == {"bomb.docx", "long.pdf"}
    assert {f.error_type for f in failed.values()} == {"DocumentLimitError"}
    assert "max_member_bytes" in failed["bomb.docx"].reason
    assert "max_text_chars" in failed["long.pdf"].reason
    assert report.files_added == 1


def test_an_uploaded_bomb_fails_alone_in_the_job_report(sim: Any, tmp_path: Path, bomb: bytes) -> None:
    rag = AgenticRAG(
        VectorStore(str(tmp_path), collection_name="sim"),
        EmbeddingModel("openai:sim-embed", base_url=sim.base_url, api_key=KEY, dimension=384),
    )
    files = [("files", ("bomb.docx", bomb)), ("files", ("notes.md", b"# Notes\n\nFerry at noon.\n"))]
    with ServerThread(create_app(rag, settings=ServerSettings())) as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            accepted = client.post("/v1/documents", files=files)
            assert accepted.status_code == 202, accepted.text
            job = _finished(client, accepted.json()["job_id"])
        assert server.loop is not None
        asyncio.run_coroutine_threadsafe(rag.aclose(), server.loop).result(timeout=10)
    assert job["status"] == "done", job
    [failure] = job["report"]["failures"]
    assert failure["path"].endswith("bomb.docx") and "max_member_bytes" in failure["reason"]
    assert job["report"]["files_added"] == 1


def _finished(client: httpx.Client, job_id: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.02)
