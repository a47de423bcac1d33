"""Parsing real files built here: every supported format, and the ways uploads go wrong."""

from __future__ import annotations

import io
import json
import zipfile

import docx
import pytest
from pypdf import PdfReader, PdfWriter

from tandem.worker.parsing import (
    SUPPORTED_EXTENSIONS,
    ContentType,
    CorruptFile,
    EmptyDocument,
    ParseError,
    UnsupportedFileType,
    detect_content_type,
    parse_document,
)


def make_pdf(lines: list[str], title: str | None = None) -> bytes:
    """A minimal one-page PDF drawing `lines` in Helvetica, with a correct xref table."""

    def literal(text: str) -> bytes:
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        return b"(" + escaped.encode("latin-1") + b")"

    content = b"BT /F1 12 Tf 72 720 Td 14 TL " + b" ".join(literal(x) + b" '" for x in lines)
    content += b" ET" if lines else b"0 0 100 100 re f"  # no text: only a filled square
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
    ]
    if title is not None:
        objects.append(b"<< /Title " + literal(title) + b" >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    info = b" /Info %d 0 R" % len(objects) if title is not None else b""
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\n" % (len(objects) + 1, info)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


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


@pytest.mark.parametrize(
    ("filename", "content_type", "expected"),
    [
        ("A.PDF", None, ContentType.PDF),
        ("notes.md", "application/octet-stream", ContentType.MARKDOWN),
        ("upload", "text/markdown; charset=utf-8", ContentType.MARKDOWN),
        ("page.php", "application/xhtml+xml", ContentType.HTML),
        ("data", "application/json", ContentType.JSON),
    ],
)
def test_extension_first_then_content_type(
    filename: str, content_type: str | None, expected: ContentType
) -> None:
    assert detect_content_type(filename, content_type) is expected


def test_supported_extensions() -> None:
    expected = {".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx", ".json"}
    assert expected == SUPPORTED_EXTENSIONS


@pytest.mark.parametrize(
    ("filename", "content_type", "message"),
    [
        ("setup.exe", None, r"^setup\.exe: unsupported file type '\.exe'; supported: \.docx, "),
        ("blob", "application/octet-stream", r"without an extension \(application/octet-stream\)"),
    ],
)
def test_unsupported_file_type(filename: str, content_type: str | None, message: str) -> None:
    with pytest.raises(UnsupportedFileType, match=message) as caught:
        parse_document(filename, b"MZ\x90\x00", content_type)
    assert caught.value.filename == filename


def _zip_without_word_parts() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "not a word document")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("filename", "data", "message"),
    [
        ("report.pdf", make_pdf(["Hello"])[:150], r"^report\.pdf: not a valid PDF \(.+\)$"),
        ("report.pdf", b"%PDF-1.4\n" + bytes(range(256)) * 4, r"not a valid PDF \(.+\)"),
        ("memo.docx", bytes(range(256)) * 8, r"^memo\.docx: not a valid DOCX file \(File is not"),
        ("memo.docx", _zip_without_word_parts(), r"^memo\.docx: not a valid DOCX file \(There is"),
        ("data.json", b'{"a": 1,}', r"^data\.json: not valid JSON \(.+ at line 1 column 9\)$"),
        ("data.json", b"[" * 100_000, r"not valid JSON \(nested too deeply\)"),
        ("photo.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", r"^photo\.txt: binary data"),
        ("page.html", b"<html>\x00\x01\x02</html>", r"^page\.html: binary data"),
        ("ctrl.md", b"\x01\x02\x03\x04\x05\x06 text", r"too many control characters"),
        ("bad.txt", b"\xff\xfe\x00\xd8", r"^bad\.txt: invalid utf-16 text"),
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
