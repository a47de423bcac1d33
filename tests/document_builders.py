"""Real files of every format the worker parses, built in memory for the parsing tests:
PDF and the ZIP packages by hand (or with the format's own library where it writes files),
e-mail with the standard library."""

from __future__ import annotations

import io
import zipfile
from email.message import EmailMessage

import docx
import openpyxl
import pptx
from benchmarks.hostile_corpus import minimal_pdf
from pptx.util import Inches


def make_pdf(lines: list[str], title: str | None = None) -> bytes:
    """A minimal one-page PDF drawing `lines` in Helvetica, with a correct xref table."""

    def literal(text: str) -> bytes:
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        return b"(" + escaped.encode("latin-1") + b")"

    content = b"BT /F1 12 Tf 72 720 Td 14 TL " + b" ".join(literal(x) + b" '" for x in lines)
    content += b" ET" if lines else b"0 0 100 100 re f"  # no text: only a filled square
    return minimal_pdf(content, title=literal(title) if title is not None else None)


def make_docx(title: str | None = None) -> bytes:
    document = docx.Document()
    if title is not None:
        document.core_properties.title = title
    document.add_paragraph("")
    document.add_heading("Quarterly Review", level=1)
    document.add_paragraph("Revenue grew by twelve percent.")
    table = document.add_table(rows=2, cols=3)
    table.cell(0, 0).text = "Region"
    table.cell(0, 1).merge(table.cell(0, 2)).text = "Revenue"
    for column, value in enumerate(["North", "1.2M", "up"]):
        table.cell(1, column).text = value
    document.add_paragraph("Closing remarks.")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def make_xlsx(rows: int = 2) -> bytes:
    workbook = openpyxl.Workbook()
    budget = workbook.active
    assert budget is not None
    budget.title = "Budget"
    budget.append(["Item", "Cost", None, "Note"])
    budget.append(["Rent", 1200, None, "monthly\nfixed"])
    budget.append([])
    for number in range(rows - 1):
        budget.append([f"Food {number}", 300.5])
    staff = workbook.create_sheet("Staff")
    staff["A1"] = "Ana"
    staff["B3"] = "Lead"
    workbook.properties.title = "Household"
    workbook.properties.creator = "Ana"
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def make_pptx() -> bytes:
    presentation = pptx.Presentation()
    plan = presentation.slides.add_slide(presentation.slide_layouts[1])
    assert plan.shapes.title is not None
    plan.shapes.title.text = "Quarterly Plan"
    plan.placeholders[1].text_frame.text = "Grow revenue\nHire two engineers"
    box = plan.shapes.add_textbox(Inches(1), Inches(5), Inches(3), Inches(1))
    box.text_frame.text = "A text box"
    notes = plan.notes_slide.notes_text_frame
    assert notes is not None
    notes.text = "Speak slowly"
    numbers = presentation.slides.add_slide(presentation.slide_layouts[5])
    assert numbers.shapes.title is not None
    numbers.shapes.title.text = "Numbers"
    table = numbers.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(4), Inches(1)).table
    for (row, column), text in {(0, 0): "Q1", (0, 1): "Q2", (1, 0): "10", (1, 1): "12"}.items():
        table.cell(row, column).text = text
    buffer = io.BytesIO()
    presentation.save(buffer)
    return buffer.getvalue()


def make_zip(members: dict[str, bytes], stored_first: str | None = None) -> bytes:
    """A ZIP of `members`; `stored_first` is written first and uncompressed (the way ODF
    and EPUB require their "mimetype" member)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        if stored_first is not None:
            archive.writestr(stored_first, members[stored_first], zipfile.ZIP_STORED)
        for name, data in members.items():
            if name != stored_first:
                archive.writestr(name, data)
    return buffer.getvalue()


_ODT_NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"'
)


def make_odt(with_meta: bool = True) -> bytes:
    content = (
        f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {_ODT_NS}>'
        "<office:body><office:text>"
        '<text:h text:outline-level="1">Field Notes</text:h>'
        '<text:p>Herons<text:s text:c="2"/>wade <text:span>at dawn</text:span>.<text:tab/>'
        "Tide<text:line-break/>low.</text:p>"
        "<text:list><text:list-item><text:p>First sighting</text:p></text:list-item></text:list>"
        "<table:table><table:table-row><table:table-cell><text:p>Bird</text:p></table:table-cell>"
        "<table:table-cell><text:p>Count</text:p></table:table-cell></table:table-row>"
        "</table:table>"
        "<text:p>Closing<text:note><text:note-citation>1</text:note-citation><text:note-body>"
        "<text:p>a footnote</text:p></text:note-body></text:note></text:p>"
        "</office:text></office:body></office:document-content>"
    )
    meta = (
        '<?xml version="1.0"?><office:document-meta '
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/"><office:meta>'
        "<dc:title>Heron Survey</dc:title><dc:creator>Ana</dc:creator>"
        "</office:meta></office:document-meta>"
    )
    members = {
        "mimetype": b"application/vnd.oasis.opendocument.text",
        "content.xml": content.encode(),
    }
    if with_meta:
        members["meta.xml"] = meta.encode()
    return make_zip(members, stored_first="mimetype")


def make_epub(title: str = "The Marsh") -> bytes:
    container = (
        '<?xml version="1.0"?><container version="1.0" '
        'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
        '<rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
        "</rootfiles></container>"
    )
    opf = (
        '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0">'
        '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/">'
        f"<dc:title>{title}</dc:title><dc:creator>Ana</dc:creator><dc:language>en</dc:language>"
        "</metadata><manifest>"
        '<item id="c2" href="text/chapter%202.xhtml" media-type="application/xhtml+xml"/>'
        '<item id="c1" href="text/one.xhtml" media-type="application/xhtml+xml"/>'
        '<item id="css" href="style.css" media-type="text/css"/>'
        '</manifest><spine><itemref idref="c1"/><itemref idref="css"/><itemref idref="c2"/>'
        "</spine></package>"
    )

    def chapter(heading: str, body: str) -> bytes:
        return (
            '<?xml version="1.0" encoding="utf-8"?><html xmlns="http://www.w3.org/1999/xhtml">'
            f"<head><title>{heading}</title></head><body><h1>{heading}</h1><p>{body}</p>"
            "</body></html>"
        ).encode()

    return make_zip(
        {
            "mimetype": b"application/epub+zip",
            "META-INF/container.xml": container.encode(),
            "OEBPS/content.opf": opf.encode(),
            "OEBPS/text/one.xhtml": chapter("Dawn", "Herons wade in the reeds."),
            "OEBPS/text/chapter 2.xhtml": chapter("Dusk", "Bitterns boom at night."),
            "OEBPS/style.css": b"p { margin: 0 }",
        },
        stored_first="mimetype",
    )


def make_eml(html: str | None = None, plain: str | None = "See you at the marsh.\n") -> bytes:
    message = EmailMessage()
    message["Subject"] = "Heron  walk on Sunday"
    message["From"] = "Ana <ana@example.org>"
    message["To"] = "team@example.org"
    message["Date"] = "Sun, 01 Jun 2025 09:30:00 +0000"
    if plain is not None:
        message.set_content(plain)
    if html is not None:
        if plain is None:
            message.set_content(html, subtype="html")
        else:
            message.add_alternative(html, subtype="html")
    message.add_attachment(b"\x89PNG...", maintype="image", subtype="png", filename="map.png")
    return message.as_bytes()
