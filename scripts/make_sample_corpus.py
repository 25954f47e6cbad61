"""Write the binary files of the sample corpus (examples/corpus): a two-page PDF and a DOCX.

Run from the repository root: ``python scripts/make_sample_corpus.py``. The text files of the corpus are
checked in as they are; only formats that need code to author are generated here.
"""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

from mini.testing.minipdf import pdf_escape, serialize

CORPUS = Path(__file__).resolve().parent.parent / "examples" / "corpus"

RECYCLING_TITLE = "Harbor Town Recycling and Waste Collection Schedule 2025"

# One list of paragraphs per page; a paragraph starting with "## " is set as a heading.
RECYCLING_PAGES = [
    [
        "# " + RECYCLING_TITLE,
        "This schedule applies to all homes in Harbor Town from 1 January to 31 December 2025. "
        "Please put your bins at the curb by 7 a.m. on collection day and take them in again by the evening.",
        "## Household waste",
        "General household waste in the grey bin is collected every week. Homes north of Quay Street are "
        "served on Monday, homes south of Quay Street on Tuesday.",
        "## Food and garden waste",
        "Food scraps and garden waste in the green bin are collected every Friday. Branches must be cut to "
        "lengths of less than one metre and tied in bundles.",
        "## Paper and cardboard",
        "Paper and cardboard in the blue bin are collected every other Thursday, starting on 9 January 2025. "
        "Flatten boxes so that the lid of the bin closes.",
    ],
    [
        "## Bottles and jars",
        "Glass bottles and jars are collected on the first Wednesday of every month.",
        "Rinse them, remove the lids and put them in the green crate. Broken window panes, mirrors and "
        "drinking vessels do not belong in the crate; take them to the recycling depot instead.",
        "## Hazardous waste",
        "Paint, batteries, motor oil and chemicals can be dropped off at the Mill Road Recycling Depot on "
        "Saturdays from 8 a.m. to noon. Never put them in any bin.",
        "## Bulky items",
        "Furniture, mattresses and large appliances are picked up by appointment for a fee of $25 per item. "
        "Call the waste hotline at 555-0123 to book a pickup.",
        "## Missed collections",
        "If your bin was not emptied, report it by 5 p.m. on the next working day and the crew will return.",
    ],
]


def page_stream(paragraphs: list[str]) -> bytes:
    """A content stream setting each paragraph as wrapped lines of Helvetica, top-down on a Letter page."""
    ops = ["BT", "72 740 Td"]
    for paragraph in paragraphs:
        if paragraph.startswith("#"):
            level = len(paragraph) - len(paragraph.lstrip("#"))
            size = 16 if level == 1 else 13
            ops += [f"/F2 {size} Tf", f"({pdf_escape(paragraph.lstrip('# '))}) Tj", f"0 -{size + 8} Td"]
            continue
        ops.append("/F1 11 Tf")
        # ~90 characters of 11 pt Helvetica fit in the 468 pt between 1-inch margins.
        for line in textwrap.wrap(paragraph, 90):
            ops += [f"({pdf_escape(line)}) Tj", "0 -15 Td"]
        ops.append("0 -8 Td")
    ops.append("ET")
    return "\n".join(ops).encode("latin-1")


def write_pdf(path: Path, pages: list[list[str]], *, title: str) -> None:
    """A minimal valid PDF 1.4: catalog, page tree, two standard fonts, one content stream per page."""
    objects: list[bytes] = []  # object n is objects[n - 1]
    n_pages = len(pages)
    page_ids = [5 + 2 * i for i in range(n_pages)]
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = " ".join(f"{pid} 0 R" for pid in page_ids)
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n_pages} >>".encode())
    for name in ("Helvetica", "Helvetica-Bold"):
        objects.append(
            f"<< /Type /Font /Subtype /Type1 /BaseFont /{name} /Encoding /WinAnsiEncoding >>".encode()
        )
    for i, paragraphs in enumerate(pages):
        stream = page_stream(paragraphs)
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {page_ids[i] + 1} 0 R "
            "/Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(f"<< /Title ({pdf_escape(title)}) /Producer (make_sample_corpus.py) >>".encode())
    info_id = len(objects)

    path.write_bytes(serialize(objects, info=info_id))


# (heading, paragraph, bullet points) of the parks rules, in order.
PARKS_SECTIONS: list[tuple[str, str, list[str]]] = [
    (
        "Opening times",
        "All parks are open daily from 6 a.m. to 10 p.m. The playground at Beacon Park closes at dusk.",
        [],
    ),
    (
        "Dogs",
        "Dogs must be kept on a leash no longer than two metres. Dogs may run off the leash only in the "
        "fenced off-leash area at the north end of Beacon Park.",
        [
            "Owners must pick up after their dogs.",
            "Dogs are not allowed on the playgrounds.",
            "Breaking these rules can lead to a fine of $100.",
        ],
    ),
    (
        "Barbecues and fires",
        "Barbecues are allowed only on the public grills at Pier Square Park and Beacon Park. Open fires are "
        "forbidden in all parks and on the beaches.",
        [],
    ),
    (
        "Group events",
        "Groups of more than 50 people need an event permit. Apply at the Town Hall at least 14 days in "
        "advance; the permit fee is $40.",
        [],
    ),
]


def write_parks_docx(path: Path) -> None:
    import docx

    document = docx.Document()
    props = document.core_properties
    props.title = "Harbor Town Parks: Rules for Visitors"
    props.author = "Harbor Town Parks Department"
    props.created = props.modified = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
    document.add_heading("Harbor Town Parks: Rules for Visitors", level=0)
    document.add_paragraph(
        "These rules keep the town's parks safe and pleasant for everyone. Park rangers can ask visitors who "
        "break them to leave. The rangers' office at Beacon Park can be reached at 555-0150."
    )
    for heading, text, bullets in PARKS_SECTIONS:
        document.add_heading(heading, level=1)
        document.add_paragraph(text)
        for bullet in bullets:
            document.add_paragraph(bullet, style="List Bullet")
    document.add_heading("Parks at a glance", level=1)
    rows = [
        ("Park", "Size", "Facilities"),
        ("Beacon Park", "12 hectares", "playground, off-leash area, public grills, skate park from 2026"),
        ("Pier Square Park", "2 hectares", "public grills, fountain, market square"),
        ("Lighthouse Point", "5 hectares", "coastal walking trail, viewpoint"),
    ]
    table = document.add_table(rows=len(rows), cols=3)
    for row, values in zip(table.rows, rows, strict=True):
        for cell, value in zip(row.cells, values, strict=True):
            cell.text = value
    document.save(str(path))


def main() -> None:
    CORPUS.mkdir(parents=True, exist_ok=True)
    write_pdf(CORPUS / "recycling_schedule.pdf", RECYCLING_PAGES, title=RECYCLING_TITLE)
    write_parks_docx(CORPUS / "parks_rules.docx")
    print(f"wrote {CORPUS / 'recycling_schedule.pdf'} and {CORPUS / 'parks_rules.docx'}")


if __name__ == "__main__":
    main()
