"""What a file is taken for: document formats by name, bytes or declared type; any other
text as text (code and configuration keep their lines); binary files refused, at upload
already when the first bytes show it."""

from __future__ import annotations

import re

import pytest
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from tokenizers.processors import TemplateProcessing

from tandem.documents.parsed import screen_upload
from tandem.worker.chunking import Chunker
from tandem.worker.parsing import (
    SUPPORTED_EXTENSIONS,
    ContentType,
    UnsupportedFileType,
    detect_content_type,
    parse_document,
)
from tests.document_builders import (
    make_docx,
    make_epub,
    make_odt,
    make_pdf,
    make_pptx,
    make_xlsx,
    make_zip,
)


@pytest.mark.parametrize(
    ("filename", "content_type", "expected"),
    [
        ("A.PDF", None, ContentType.PDF),
        ("notes.md", "application/octet-stream", ContentType.MARKDOWN),
        ("upload", "text/markdown; charset=utf-8", ContentType.MARKDOWN),
        ("page.php", "application/xhtml+xml", ContentType.HTML),
        ("data", "application/json", ContentType.JSON),
        ("sheet.XLSX", None, ContentType.XLSX),
        ("mail", "message/rfc822", ContentType.EML),
        # Anything else is text: code and configuration by name, the rest plain text.
        ("deploy.yaml", None, ContentType.CODE),
        ("nginx.conf", "application/octet-stream", ContentType.CODE),
        ("main.go", "text/plain", ContentType.CODE),
        ("Makefile", None, ContentType.CODE),
        ("values.csv", None, ContentType.CODE),
        ("server.log", None, ContentType.TEXT),
        ("README", None, ContentType.TEXT),
        ("guide.rst", None, ContentType.TEXT),
    ],
)
def test_extension_first_then_content_type(
    filename: str, content_type: str | None, expected: ContentType
) -> None:
    assert detect_content_type(filename, content_type) is expected


def test_supported_extensions() -> None:
    expected = {".txt", ".md", ".markdown", ".html", ".htm", ".xhtml", ".pdf", ".docx", ".json"}
    assert expected | {".xlsx", ".pptx", ".odt", ".epub", ".eml"} == SUPPORTED_EXTENSIONS


@pytest.mark.parametrize(
    ("filename", "data", "language"),
    [
        ("deploy.yaml", b"spec:\n  replicas: 2\n  image: tandem\n", "yaml"),
        ("settings.toml", b"[server]\nport = 8080\n", "toml"),
        ("setup.ini", b"[db]\nhost=localhost\n", "ini"),
        ("app.py", b"def main():\n    return 1\n", "python"),
        ("run", b"#!/usr/bin/env bash\nset -eu\necho hi\n", "shell"),
        ("Dockerfile", b"FROM debian\nRUN true\n", "dockerfile"),
        ("prices.csv", b"item,price\nrent,1200\n", "csv"),
        ("lib.c", b"int main(void) {\n\treturn 0;\n}\n", "c"),
    ],
)
def test_code_and_configuration_keep_lines_and_indentation(
    filename: str, data: bytes, language: str
) -> None:
    blank = b"" if data.startswith(b"#!") else b"\n\n"  # a "#!" line must come first
    doc = parse_document(filename, blank + data)
    assert (doc.content_type, doc.metadata["language"]) == (ContentType.CODE, language)
    assert doc.text == data.decode().rstrip()  # leading blank lines only are dropped


def test_declared_code_types_name_the_language() -> None:
    doc = parse_document("upload", b"print('hi')\n", "text/x-python; charset=utf-8")
    assert (doc.content_type, doc.metadata["language"]) == (ContentType.CODE, "python")


def test_indented_first_line_of_code_is_kept_and_plain_text_keeps_line_breaks() -> None:
    assert parse_document("block.yaml", b"  nested: true\n  other: 1\n").text.startswith("  n")
    log = parse_document("app.log", b"12:00 start\n12:01 \tstop\n\n\n12:02 gone\n")
    assert log.text == "12:00 start\n12:01 \tstop\n\n\n12:02 gone"


def test_chunks_of_code_keep_its_line_breaks() -> None:
    lines = [f"    step_{i} = run(step_{i - 1})  # {i}" for i in range(1, 120)]
    source = "def pipeline():\n" + "\n".join(lines) + "\n"
    doc = parse_document("pipeline.py", source.encode())
    chunks = Chunker(_word_tokenizer(source), chunk_tokens=64, overlap_tokens=0).chunk(doc)
    assert len(chunks) > 3
    for chunk in chunks:
        assert chunk.text == doc.text[chunk.start : chunk.end]
        assert "\n    step_" in chunk.text or chunk.text.startswith(("def", "step", "    "))


def _word_tokenizer(text: str) -> Tokenizer:
    """A word-level tokenizer of `text`'s words, with [CLS]/[SEP] like the real model's."""
    words = sorted(set(re.findall(r"\w+|[^\w\s]+", text)))
    vocab = {word: number for number, word in enumerate(["[UNK]", "[CLS]", "[SEP]", *words])}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    tokenizer.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)]
    )
    return tokenizer


@pytest.mark.parametrize(
    ("data", "content_type", "encoding"),
    [
        ("Привет, мир! Это документ.".encode("koi8_r"), "text/plain; charset=KOI8-R", "koi8-r"),
        ("こんにちは世界。これはテスト文書です。日本語。".encode("shift_jis"), None, "cp932"),
        ("Привет, мир! Это тестовый документ для проверки.".encode("cp1251"), None, "cp1251"),
        ("Le garçon a mangé une crème brûlée à l'hôtel.".encode("cp1252"), None, "cp1252"),
    ],
)
def test_declared_and_sniffed_charsets(
    data: bytes, content_type: str | None, encoding: str
) -> None:
    doc = parse_document("letter.txt", data, content_type)
    assert doc.metadata["encoding"] == encoding
    assert doc.text.isprintable()


@pytest.mark.parametrize(
    ("filename", "content_type", "data", "message"),
    [
        ("setup.exe", None, b"MZ\x90\x00", r"^setup\.exe: unsupported file type: binary file "),
        ("blob", "application/octet-stream", b"MZ\x90\x00", r"\(Windows executable\) is not"),
        ("photo.txt", None, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", r"\(PNG image\) is not"),
        ("a.jpg", "image/jpeg", b"\xff\xd8\xff\xe0\x00\x10JFIF", r"\(JPEG image\)"),
        ("backup", None, b"\x1f\x8b\x08\x00\x00\x00", r"\(gzip archive\)"),
        ("tool", None, b"\x7fELF\x02\x01\x01", r"\(ELF executable\)"),
        ("old.doc", None, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", r"\(legacy Microsoft Office"),
        ("data.bin", None, b"\x01\x02\x00\x03", r"^data\.bin: unsupported file type: binary data"),
    ],
)
def test_binary_files_are_refused(
    filename: str, content_type: str | None, data: bytes, message: str
) -> None:
    with pytest.raises(UnsupportedFileType, match=message) as caught:
        parse_document(filename, data, content_type)
    assert caught.value.filename == filename
    with pytest.raises(UnsupportedFileType, match="unsupported file type"):
        screen_upload(filename, content_type, data)


def test_screening_at_upload_refuses_only_what_is_certainly_not_indexable() -> None:
    with pytest.raises(UnsupportedFileType, match=r"\(ZIP archive\)"):
        screen_upload("photos", None, make_zip({"hello.txt": b"not a document"}))
    with pytest.raises(UnsupportedFileType, match=r"\(\.exe executable\)"):
        detect_content_type("setup.exe")  # no bytes at hand: the name decides
    # The first bytes of a DOCX show no Word part yet: the worker decides.
    screen_upload("report", None, make_docx()[:200])
    for name, data in [("notes", b"plain words"), ("x.yaml", b"a: 1"), ("r.pdf", b"%PDF-1.4")]:
        screen_upload(name, None, data)
    # Office packages and books are told by their bytes when the name says nothing.
    for data, kind in [
        (make_docx(), ContentType.DOCX),
        (make_xlsx(), ContentType.XLSX),
        (make_pptx(), ContentType.PPTX),
        (make_odt(), ContentType.ODT),
        (make_epub(), ContentType.EPUB),
        (make_pdf(["x"]), ContentType.PDF),
    ]:
        assert detect_content_type("upload", "application/octet-stream", data) is kind
