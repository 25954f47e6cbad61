"""Tests for mini.ingest.loaders: discovery rules, one test group per format, errors that name the file."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from mini.errors import DocumentError, DocumentParseError, UnsupportedFormatError
from mini.ingest.loaders import SUPPORTED_SUFFIXES, discover, load_file, load_file_async
from mini.testing.minipdf import pdf_escape, serialize

SAMPLE_CORPUS = Path(__file__).resolve().parents[2] / "examples" / "corpus"


# --- a minimal PDF writer: tests need text, blank and encrypted PDFs, and pypdfium2 cannot author text ---


def make_pdf(pages: list[list[str]], *, title: str = "", encrypt: bool = False) -> bytes:
    """A valid PDF with one Helvetica line per string; an empty list makes a blank page."""
    n = len(pages)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{' '.join(f'{4 + 2 * i} 0 R' for i in range(n))}] /Count {n} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    for i, lines in enumerate(pages):
        ops = ["BT", "/F1 11 Tf", "72 740 Td"]
        for line in lines:
            ops += [f"({pdf_escape(line)}) Tj", "0 -15 Td"]
        stream = "\n".join([*ops, "ET"]).encode("latin-1") if lines else b""
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {5 + 2 * i} 0 R "
            "/Resources << /Font << /F1 3 0 R >> >> >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(f"<< /Title ({pdf_escape(title)}) >>".encode())
    trailer_extra = b""
    if encrypt:
        # A standard security handler whose /U entry matches no password: opening needs a password.
        objects.append(
            b"<< /Filter /Standard /V 1 /R 2 /O <" + b"11" * 32 + b"> /U <" + b"22" * 32 + b"> /P -4 >>"
        )
        trailer_extra = b" /Encrypt %d 0 R /ID [<%s> <%s>]" % (len(objects), b"ab" * 16, b"ab" * 16)
    return serialize(objects, info=4 + 2 * n, trailer_extra=trailer_extra)


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


# --- discover ------------------------------------------------------------------------------------------------


def test_discover_walks_directories_sorted_deduplicated_and_skips_hidden_and_unsupported(
    tmp_path: Path,
) -> None:
    for name in [
        "b.md",
        "a.txt",
        "sub/c.pdf",
        "sub/deeper/d.jsonl",
        "notes.xyz",
        ".hidden.txt",
        ".git/e.txt",
    ]:
        write(tmp_path / name, "x")
    found = discover([tmp_path, tmp_path / "a.txt", str(tmp_path / "sub")])
    assert found == [
        tmp_path / "a.txt",
        tmp_path / "b.md",
        tmp_path / "sub" / "c.pdf",
        tmp_path / "sub" / "deeper" / "d.jsonl",
    ]
    assert all(p.is_absolute() for p in found)


def test_discover_glob_restricts_walked_files(tmp_path: Path) -> None:
    for name in ["a.md", "b.txt", "sub/c.md", "sub/d.html"]:
        write(tmp_path / name, "x")
    assert discover([tmp_path], glob="*.md") == [tmp_path / "a.md", tmp_path / "sub" / "c.md"]
    assert discover([tmp_path], glob="sub/*") == [tmp_path / "sub" / "c.md", tmp_path / "sub" / "d.html"]


def test_discover_keeps_explicitly_named_files_so_unsupported_ones_fail_loudly(tmp_path: Path) -> None:
    odd = write(tmp_path / ".notes.xyz", "x")
    assert discover([odd]) == [odd]
    with pytest.raises(UnsupportedFormatError, match=r"\.notes\.xyz"):
        load_file(odd)


def test_discover_missing_path_raises_document_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DocumentError, match="no such file or directory") as info:
        discover([missing])
    assert info.value.path == str(missing)


# --- text and markdown ---------------------------------------------------------------------------------------


def test_text_file_becomes_one_document_with_absolute_posix_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "notes.txt", "Line one.\r\nLine two.\r\n")
    monkeypatch.chdir(tmp_path)
    [doc] = load_file("notes.txt")
    assert doc.text == "Line one.\nLine two."
    assert doc.source == (tmp_path / "notes.txt").as_posix()
    assert doc.metadata == {"filename": "notes.txt", "file_type": "txt"}


def test_utf8_bom_is_dropped_and_utf16_is_recognised(tmp_path: Path) -> None:
    [doc] = load_file(write(tmp_path / "bom.txt", b"\xef\xbb\xbfcaf\xc3\xa9"))
    assert doc.text == "café" and "encoding" not in doc.metadata
    [doc16] = load_file(write(tmp_path / "wide.txt", "naïve text".encode("utf-16")))
    assert doc16.text == "naïve text" and doc16.metadata["encoding"] == "utf-16"


def test_non_utf8_text_falls_back_to_cp1252_and_says_so(tmp_path: Path) -> None:
    [doc] = load_file(write(tmp_path / "legacy.txt", "“Smart quotes” cost 5 €".encode("cp1252")))
    assert doc.text == "“Smart quotes” cost 5 €"
    assert doc.metadata["encoding"] == "cp1252"


def test_binary_content_in_a_text_file_is_a_parse_error(tmp_path: Path) -> None:
    path = write(tmp_path / "blob.txt", b"abc\x00\x01\x02def")
    with pytest.raises(DocumentParseError, match="binary"):
        load_file(path)


@pytest.mark.parametrize(
    "name", ["empty.txt", "empty.md", "empty.pdf", "empty.json", "empty.jsonl", "e.html"]
)
@pytest.mark.parametrize("content", [b"", b"  \n\t \r\n"])
def test_empty_or_whitespace_file_returns_no_documents(tmp_path: Path, name: str, content: bytes) -> None:
    assert load_file(write(tmp_path / name, content)) == []


def test_markdown_title_comes_from_first_heading(tmp_path: Path) -> None:
    [doc] = load_file(write(tmp_path / "guide.markdown", "Intro line\n\n# The Guide #\n\n## Part\n\nText."))
    assert doc.metadata["title"] == "The Guide"
    assert doc.metadata["file_type"] == "md"


# --- HTML ----------------------------------------------------------------------------------------------------


def test_html_drops_scripts_styles_and_navigation_and_keeps_headings(tmp_path: Path) -> None:
    html = """<html><head><title> Opening Hours </title><style>p {color: red}</style></head>
    <body><nav><a href="/">Home</a> | <a href="/x">Menu</a></nav>
    <script>var secret = 1;</script><noscript>Enable JS</noscript>
    <h1>Library</h1><p>Open <b>daily</b> from
       9 to 5, see <a href="https://example.org/hours">the hours page</a>.</p>
    <h2>Services</h2><ul><li>Wi-Fi</li><li>snake_case printers</li></ul></body></html>"""
    [doc] = load_file(write(tmp_path / "page.htm", html))
    assert doc.metadata["title"] == "Opening Hours"
    assert doc.metadata["file_type"] == "html"
    assert doc.text.startswith("# Library\n\nOpen **daily** from 9 to 5, see the hours page.")
    assert "## Services" in doc.text and "snake_case printers" in doc.text
    for dropped in ("secret", "color", "Menu", "Enable JS", "example.org", "Opening Hours"):
        assert dropped not in doc.text


def test_html_with_only_scripts_returns_no_documents(tmp_path: Path) -> None:
    assert load_file(write(tmp_path / "app.html", "<html><script>boot()</script></html>")) == []


# --- PDF -----------------------------------------------------------------------------------------------------


def test_pdf_gives_one_document_per_page_and_skips_blank_pages(tmp_path: Path) -> None:
    data = make_pdf([["First page text."], [], ["Third page (with parentheses)."]], title="Schedule")
    docs = load_file(write(tmp_path / "schedule.pdf", data))
    assert [d.text for d in docs] == ["First page text.", "Third page (with parentheses)."]
    assert [d.metadata["page"] for d in docs] == [1, 3]
    assert {d.source for d in docs} == {(tmp_path / "schedule.pdf").as_posix()}
    assert docs[0].metadata == {
        "filename": "schedule.pdf",
        "file_type": "pdf",
        "title": "Schedule",
        "page": 1,
    }


def test_pdf_lines_wrapped_to_the_page_width_are_joined(tmp_path: Path) -> None:
    lines = [
        "Household waste",
        "General household waste in the grey bin is collected every week on Monday for the north and",
        "on Tuesday for the south of town; the crews use electric trucks bought as part of a multi-",
        "year plan. Bins go out by 7 a.m.",
        "Bulky items",
    ]
    [doc] = load_file(write(tmp_path / "w.pdf", make_pdf([lines])))
    # PDFium itself joins a line ending in a hyphen to the next one; the loader drops its soft-hyphen mark.
    assert doc.text.split("\n") == [lines[0], lines[1] + " " + lines[2][:-1] + lines[3], lines[4]]


def test_pdf_without_any_text_is_a_parse_error_mentioning_ocr(tmp_path: Path) -> None:
    path = write(tmp_path / "scan.pdf", make_pdf([[], []]))
    with pytest.raises(DocumentParseError, match="OCR") as info:
        load_file(path)
    assert "scan.pdf" in str(info.value)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"%PDF-1.4\nthis is not really a pdf", "not a valid PDF"),
        (make_pdf([["Secret"]], encrypt=True), "password"),
    ],
)
def test_corrupt_or_encrypted_pdf_is_a_parse_error_with_the_reason(
    tmp_path: Path, data: bytes, reason: str
) -> None:
    path = write(tmp_path / "bad.pdf", data)
    with pytest.raises(DocumentParseError, match=reason) as info:
        load_file(path)
    assert info.value.path == path.as_posix()


async def test_concurrent_pdf_loads_in_threads_are_serialised_safely(tmp_path: Path) -> None:
    # PDFium is not thread-safe; without the loader's lock this crashes or corrupts the process.
    paths = [
        write(tmp_path / f"doc{i}.pdf", make_pdf([[f"Document {i} page {p}."] for p in range(1, 21)]))
        for i in range(6)
    ]
    results = await asyncio.gather(*(load_file_async(p) for p in paths))
    for i, docs in enumerate(results):
        assert len(docs) == 20
        assert docs[19].text == f"Document {i} page 20." and docs[19].metadata["page"] == 20


# --- DOCX ----------------------------------------------------------------------------------------------------


def test_docx_headings_lists_and_tables_become_markdown_text(tmp_path: Path) -> None:
    docx = pytest.importorskip("docx")
    document = docx.Document()
    document.core_properties.title = "Park Rules"
    document.add_heading("Rules", level=1)
    document.add_paragraph("Dogs on a leash.")
    document.add_paragraph("Pick up after your dog.", style="List Bullet")
    document.add_heading("Details", level=2)
    table = document.add_table(rows=2, cols=2)
    for row, values in zip(table.rows, [("Park", "Size"), ("Beacon", "12 ha")], strict=True):
        for cell, value in zip(row.cells, values, strict=True):
            cell.text = value
    path = tmp_path / "rules.docx"
    document.save(str(path))
    [doc] = load_file(path)
    assert (
        doc.text
        == "# Rules\n\nDogs on a leash.\n\n- Pick up after your dog.\n\n## Details\n\nPark | Size\nBeacon | 12 ha"
    )
    assert doc.metadata == {"filename": "rules.docx", "file_type": "docx", "title": "Park Rules"}


def test_corrupt_docx_is_a_parse_error(tmp_path: Path) -> None:
    path = write(tmp_path / "broken.docx", b"PK\x03\x04 definitely not a zip archive")
    with pytest.raises(DocumentParseError, match="cannot read DOCX") as info:
        load_file(path)
    assert "broken.docx" in str(info.value)


# --- JSON and JSONL ------------------------------------------------------------------------------------------


def test_json_object_with_text_field_is_one_document_with_scalar_metadata(tmp_path: Path) -> None:
    record = {
        "title": "Ferry",
        "content": "Leaves every 45 minutes.",
        "year": 2025,
        "tags": ["a"],
        "nested": {},
    }
    [doc] = load_file(write(tmp_path / "ferry.json", json.dumps(record)))
    assert doc.text == "Ferry\n\nLeaves every 45 minutes."
    assert doc.source == (tmp_path / "ferry.json").as_posix()
    assert doc.metadata == {"title": "Ferry", "year": 2025, "filename": "ferry.json", "file_type": "json"}


def test_json_list_gives_one_document_per_item_with_id_or_index_in_the_source(tmp_path: Path) -> None:
    items = [{"id": "run", "body": "A 10 km race."}, {"text": "Market on Saturdays."}]
    docs = load_file(write(tmp_path / "events.json", json.dumps(items)))
    base = (tmp_path / "events.json").as_posix()
    assert [d.source for d in docs] == [f"{base}#run", f"{base}#1"]
    assert [d.text for d in docs] == ["A 10 km race.", "Market on Saturdays."]


@pytest.mark.parametrize(
    "value", [{"name": "x", "size": 3}, [1, 2, 3], [{"text": "ok"}, {"other": 1}], "just text"]
)
def test_json_of_any_other_shape_is_indexed_as_pretty_printed_text(tmp_path: Path, value: object) -> None:
    [doc] = load_file(write(tmp_path / "data.json", json.dumps(value)))
    assert doc.text == json.dumps(value, indent=2)


def test_invalid_json_error_gives_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.json", '{\n  "text": "a",\n  oops\n}')
    with pytest.raises(DocumentParseError, match=r"line 3, column 3") as info:
        load_file(path)
    assert "bad.json" in str(info.value)


def test_jsonl_beir_rows_become_documents_with_title_prefix_and_row_ids(tmp_path: Path) -> None:
    rows = [
        {
            "_id": "4983",
            "title": "Microstructural development",
            "text": "Alterations of the architecture.",
            "n": 1,
        },
        {"text": "No id here.", "flag": True},
    ]
    content = json.dumps(rows[0]) + "\n\n" + json.dumps(rows[1]) + "\n"
    docs = load_file(write(tmp_path / "corpus.jsonl", content))
    base = (tmp_path / "corpus.jsonl").as_posix()
    assert [d.source for d in docs] == [f"{base}#4983", f"{base}#3"]  # no id: the (1-based) line number
    assert docs[0].text == "Microstructural development\n\nAlterations of the architecture."
    assert docs[0].metadata == {
        "_id": "4983",
        "title": "Microstructural development",
        "n": 1,
        "filename": "corpus.jsonl",
        "file_type": "jsonl",
    }
    assert docs[1].metadata["flag"] is True


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [("{not json", "invalid JSON"), ("[1, 2]", "expected an object"), ('{"x": 1}', "object")],
)
def test_a_bad_jsonl_line_fails_the_whole_file_naming_the_line(
    tmp_path: Path, bad_line: str, reason: str
) -> None:
    path = write(tmp_path / "rows.jsonl", '{"text": "fine"}\n{"text": "also fine"}\n' + bad_line + "\n")
    with pytest.raises(DocumentParseError, match=rf"line 3: .*{reason}") as info:
        load_file(path)
    assert "rows.jsonl" in str(info.value)


# --- errors and the async wrapper ----------------------------------------------------------------------------


def test_unsupported_suffix_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "slides.pptx", b"whatever")
    with pytest.raises(UnsupportedFormatError, match=r"slides\.pptx") as info:
        load_file(path)
    assert ".pptx" in info.value.reason


def test_missing_or_unreadable_files_raise_document_errors_naming_them(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match=r"missing\.txt: cannot read file: no such file"):
        load_file(tmp_path / "missing.txt")
    (tmp_path / "folder.md").mkdir()
    with pytest.raises(DocumentError, match=r"folder\.md: is a directory"):
        load_file(tmp_path / "folder.md")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read any file")
def test_permission_denied_is_a_document_error(tmp_path: Path) -> None:
    path = write(tmp_path / "private.txt", "secret")
    path.chmod(0)
    try:
        with pytest.raises(DocumentError, match=r"private\.txt: cannot read file: permission denied"):
            load_file(path)
    finally:
        path.chmod(0o600)


async def test_load_file_async_matches_load_file(tmp_path: Path) -> None:
    path = write(tmp_path / "a.md", "# Title\n\nBody.")
    assert await load_file_async(path) == load_file(path)


# --- the sample corpus the README demo ingests ---------------------------------------------------------------


def test_sample_corpus_loads_and_holds_the_demo_answers_once() -> None:
    files = discover([SAMPLE_CORPUS])
    assert {p.suffix for p in files} == {".md", ".html", ".pdf", ".docx", ".jsonl", ".txt", ".json"}
    assert {p.suffix for p in files} <= SUPPORTED_SUFFIXES
    assert sum(p.stat().st_size for p in files) < 200_000
    docs = [doc for path in files for doc in load_file(path)]
    answers = {
        "council_budget_2025.md": "The 2025 budget for the Harbor Town Public Library is $1.2 million",
        "recycling_schedule.pdf": "Glass bottles and jars are collected on the first Wednesday of every month.",
    }
    for filename, sentence in answers.items():
        holders = [d.metadata["filename"] for d in docs if sentence in d.text]
        assert holders == [filename]
    # No competing sentence elsewhere: the key facts appear in one file only.
    for needle, filename in [("$1.2 million", "council_budget_2025.md"), ("glass", "recycling_schedule.pdf")]:
        assert {d.metadata["filename"] for d in docs if needle in d.text.lower()} == {filename}
