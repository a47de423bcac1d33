"""Parsing real files built here: every supported format, and the ways uploads go wrong."""

from __future__ import annotations

import io
import json
import re
import zipfile

import pytest
from pypdf import PdfReader, PdfWriter

from tandem.worker.parsing import (
    ContentType,
    CorruptFile,
    EmptyDocument,
    ParseError,
    ParseLimits,
    parse_document,
)
from tests.document_builders import (
    make_docx,
    make_eml,
    make_epub,
    make_odt,
    make_pdf,
    make_pptx,
    make_xlsx,
    make_zip,
)


def test_plain_text_with_utf8_bom_and_crlf() -> None:
    doc = parse_document("notes.txt", b"\xef\xbb\xbfHello w\xc3\xb6rld\r\nline two\r\n")
    assert doc.text == "Hello wörld\nline two"
    assert (doc.title, doc.path, doc.content_type) == ("notes", "notes.txt", "text/plain")
    assert doc.metadata["encoding"] == "utf-8-sig"


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        ("Grüße aus Köln".encode("utf-16"), "utf-16"),
        ("Grüße aus Köln".encode("utf-32"), "utf-32"),
        ("Grüße aus Köln".encode("cp1252"), "cp1252"),
    ],
)
def test_other_text_encodings(data: bytes, encoding: str) -> None:
    doc = parse_document("greeting.txt", data)
    assert (doc.text, doc.metadata["encoding"]) == ("Grüße aus Köln", encoding)


def test_markdown_title_is_first_h1_outside_code() -> None:
    source = "Intro line\n\n```sh\n# not a heading\n```\n\n# Install Guide #\n\n## Steps\nRun it.\n"
    doc = parse_document("guide.md", source.encode())
    assert doc.title == "Install Guide"
    assert doc.content_type == ContentType.MARKDOWN
    assert doc.text == source.strip()  # Markdown is kept for the Markdown-aware splitter


def test_markdown_without_h1_falls_back_to_filename_stem() -> None:
    assert parse_document("release-notes.markdown", b"## Only h2\ntext").title == "release-notes"


def test_html_drops_scripts_styles_nav_and_keeps_paragraphs() -> None:
    html = b"""<!doctype html><html><head><title>Team  Handbook</title>
    <style>p { color: red }</style><script>var secret = 1;</script></head>
    <body><nav><a href="/">Home</a></nav><h1>Welcome</h1>
    <p>First paragraph,
       wrapped in source.</p><!-- a comment --><p>Second<br>line &amp; more</p>
    <script>trackUser()</script><table><tr><td>a</td><td>b</td></tr></table></body></html>"""
    doc = parse_document("handbook.html", html)
    assert doc.title == "Team Handbook"
    assert (
        doc.text == "Welcome\n\nFirst paragraph, wrapped in source.\n\nSecond\nline & more\n\na b"
    )
    for gone in ("secret", "color", "Home", "trackUser", "comment"):
        assert gone not in doc.text


def test_html_title_falls_back_to_first_h1() -> None:
    doc = parse_document("page.htm", b"<body><h1>Main <em>Topic</em></h1><p>Body</p></body>")
    assert (doc.title, doc.content_type) == ("Main Topic", "text/html")


def test_hand_built_pdf_is_readable_by_pypdf() -> None:
    data = make_pdf(["Hello PDF world", "Second (line)"], title="Annual Report")
    reader = PdfReader(io.BytesIO(data), strict=True)  # strict: the xref offsets are right
    assert reader.pages[0].extract_text() == "Hello PDF world\nSecond (line)"
    doc = parse_document("report.pdf", data)
    assert (doc.title, doc.text) == ("Annual Report", "Hello PDF world\nSecond (line)")
    assert doc.content_type == "application/pdf"
    assert doc.metadata["pages"] == "1"


def test_pdf_without_title_metadata_uses_first_line() -> None:
    assert parse_document("r.pdf", make_pdf(["Findings", "More"])).title == "Findings"


def test_encrypted_pdf_opens_with_empty_password_or_is_refused() -> None:
    def encrypted(user_password: str) -> bytes:
        writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf(["Secret plans"]))))
        writer.encrypt(user_password, "owner", algorithm="RC4-128")
        buffer = io.BytesIO()
        writer.write(buffer)
        return buffer.getvalue()

    doc = parse_document("open.pdf", encrypted(""))
    assert doc.text == "Secret plans"
    assert doc.metadata["encrypted"] == "true"
    with pytest.raises(CorruptFile, match=r"^locked\.pdf: the PDF is password-protected$"):
        parse_document("locked.pdf", encrypted("hunter2"))


def test_docx_paragraphs_headings_and_table_cells() -> None:
    doc = parse_document("review.docx", make_docx())
    assert doc.title == "Quarterly Review"  # first heading, the empty paragraph is skipped
    assert doc.text == (
        "Quarterly Review\n\nRevenue grew by twelve percent.\n\n"
        "Region | Revenue\nNorth | 1.2M | up\n\nClosing remarks."
    )
    assert doc.content_type == ContentType.DOCX


def test_docx_core_title_wins() -> None:
    assert parse_document("r.docx", make_docx(title="Board Pack")).title == "Board Pack"


def test_json_document_fields() -> None:
    payload = {"title": "FAQ", "body": "Answers here.", "author": "Ana", "draft": False, "x": [1]}
    doc = parse_document("faq.json", json.dumps(payload).encode())
    assert (doc.title, doc.text) == ("FAQ", "Answers here.")
    assert doc.metadata == {"author": "Ana", "draft": "false"}


def test_json_is_flattened_to_key_value_lines() -> None:
    payload = {"name": "svc", "limits": {"cpu": 2, "debug": True}, "tags": ["a", {"k": None}]}
    doc = parse_document("config.json", json.dumps(payload).encode(), "text/plain")
    assert doc.text == "name: svc\nlimits.cpu: 2\nlimits.debug: true\ntags[0]: a"
    assert doc.title == "config"
    assert parse_document("list.json", b'["x", 3.5]').text == "x\n3.5"


def _zip_without_word_parts() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "not a word document")
    return buffer.getvalue()


def _epub_without_spine() -> bytes:
    with zipfile.ZipFile(io.BytesIO(make_epub())) as book:
        members = {name: book.read(name) for name in book.namelist()}
    opf = members["OEBPS/content.opf"].decode()
    members["OEBPS/content.opf"] = re.sub("<spine>.*</spine>", "<spine/>", opf).encode()
    return make_zip(members, stored_first="mimetype")


@pytest.mark.parametrize(
    ("filename", "data", "message"),
    [
        ("report.pdf", make_pdf(["Hello"])[:150], r"^report\.pdf: not a valid PDF \(.+\)$"),
        ("report.pdf", b"%PDF-1.4\n" + bytes(range(256)) * 4, r"not a valid PDF \(.+\)"),
        ("memo.docx", bytes(range(256)) * 8, r"^memo\.docx: not a valid DOCX file \(File is not"),
        ("memo.docx", _zip_without_word_parts(), r"^memo\.docx: not a valid DOCX file \(There is"),
        ("data.json", b'{"a": 1,}', r"^data\.json: not valid JSON \(.+ at line 1 column 9\)$"),
        ("data.json", b"[" * 100_000, r"not valid JSON \(nested too deeply\)"),
        ("page.html", b"<html>\x00\x01\x02</html>", r"^page\.html: binary data"),
        ("ctrl.md", b"\x01\x02\x03\x04\x05\x06 text", r"too many control characters"),
        ("bad.txt", b"\xff\xfe\x00\xd8", r"^bad\.txt: invalid utf-16 text"),
        ("data.json", b"[" * 200_000 + b"]" * 200_000, r"not valid JSON \(nested too deeply\)"),
        ("s.xlsx", bytes(range(256)) * 8, r"^s\.xlsx: not a valid XLSX file \(File is not a zip"),
        ("s.xlsx", _zip_without_word_parts(), r"^s\.xlsx: not a valid XLSX file \(.+\)$"),
        ("p.pptx", _zip_without_word_parts(), r"^p\.pptx: not a valid PPTX file \(.+\)$"),
        ("n.odt", _zip_without_word_parts(), r"^n\.odt: not a valid ODT file \(it has no content"),
        ("n.odt", make_zip({"content.xml": b"<unclosed"}), r"ODT file \(content\.xml: .+\)$"),
        ("b.epub", _zip_without_word_parts(), r"^b\.epub: not a valid EPUB file \(it has no META"),
        ("b.epub", _epub_without_spine(), r"EPUB file \(its spine lists no chapters\)$"),
        ("m.eml", b"just some words\n", r"^m\.eml: not a valid e-mail message \(it has no mail"),
        ("m.eml", b"Subject: x\n\n\x00\x01", r"^m\.eml: binary data, not text"),
    ],
)
def test_corrupt_files(filename: str, data: bytes, message: str) -> None:
    with pytest.raises(CorruptFile, match=message) as caught:
        parse_document(filename, data)
    assert caught.value.filename == filename
    assert isinstance(caught.value, ParseError)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("filename", "data", "message"),
    [
        ("blank.txt", b" \r\n\t\n", r"^blank\.txt: no text could be extracted$"),
        ("scan.pdf", make_pdf([]), r"^scan\.pdf: no text .+ \(a scanned PDF\? OCR is not"),
        ("empty.json", b"{}", r"^empty\.json: no text"),
        ("empty.html", b"<html><head><title>T</title></head><body> </body></html>", "no text"),
    ],
)
def test_empty_documents(filename: str, data: bytes, message: str) -> None:
    with pytest.raises(EmptyDocument, match=message):
        parse_document(filename, data)


def test_long_titles_are_collapsed_and_capped() -> None:
    doc = parse_document("long.md", ("# " + "word  " * 100).encode())
    assert len(doc.title) == 200
    assert doc.title.endswith("…")
    assert "  " not in doc.title


def test_xlsx_sheets_are_headings_and_rows_tab_separated() -> None:
    doc = parse_document("budget.xlsx", make_xlsx())
    assert (doc.title, doc.content_type) == ("Household", ContentType.XLSX)
    assert doc.text == (
        "Budget\nItem\tCost\t\tNote\nRent\t1200\t\tmonthly fixed\nFood 0\t300.5\n\n"
        "Staff\nAna\n\tLead"
    )
    assert doc.metadata == {"sheets": "2", "author": "Ana"}
    bounded = parse_document("big.xlsx", make_xlsx(rows=50), limits=ParseLimits(max_sheet_rows=4))
    assert bounded.text.endswith("Food 0\t300.5")  # 4 rows: 3 of data and the empty one
    assert bounded.metadata["truncated"] == "true"


def test_pptx_slide_titles_text_frames_tables_and_notes() -> None:
    doc = parse_document("plan.pptx", make_pptx())
    assert (doc.title, doc.content_type) == ("Quarterly Plan", ContentType.PPTX)
    assert doc.text == (
        "Quarterly Plan\n\nGrow revenue\nHire two engineers\n\nA text box\n\n"
        "Notes: Speak slowly\n\nNumbers\n\nQ1 | Q2\n10 | 12"
    )
    assert doc.metadata == {"slides": "2"}


def test_odt_headings_paragraphs_lists_and_tables() -> None:
    doc = parse_document("survey.odt", make_odt())
    assert (doc.title, doc.content_type) == ("Heron Survey", ContentType.ODT)
    assert doc.text == (
        "Field Notes\n\nHerons  wade at dawn.\tTide\nlow.\n\nFirst sighting\n\n"
        "Bird | Count\n\nClosing\na footnote"
    )
    assert doc.metadata == {"author": "Ana"}
    assert parse_document("s.odt", make_odt(with_meta=False)).title == "Field Notes"


def test_epub_chapters_in_spine_order_with_opf_title() -> None:
    doc = parse_document("marsh.epub", make_epub())
    assert (doc.title, doc.content_type) == ("The Marsh", ContentType.EPUB)
    assert doc.text == "Dawn\n\nHerons wade in the reeds.\n\nDusk\n\nBitterns boom at night."
    assert doc.metadata == {"chapters": "2", "author": "Ana", "language": "en"}


def test_eml_subject_headers_and_plain_part() -> None:
    doc = parse_document("walk.eml", make_eml(html="<p>See you <b>there</b></p>"))
    assert (doc.title, doc.text, doc.content_type) == (
        "Heron walk on Sunday",
        "See you at the marsh.",
        ContentType.EML,
    )
    assert doc.metadata == {
        "from": "Ana <ana@example.org>",
        "to": "team@example.org",
        "date": "Sun, 01 Jun 2025 09:30:00 +0000",
        "attachments": "1",
    }
    html_only = parse_document("walk.eml", make_eml(html="<p>See you <b>there</b></p>", plain=None))
    assert html_only.text == "See you there"
