"""Hostile files, generated: each is built to make a parser run for hours, unpack gigabytes,
overflow a stack or choke a decoder. Shared by tests/test_hostile_files.py and
benchmarks/hostile_files.py. Bombs are built from a deflate block repeated (a megabyte of
one byte compresses to the same block every time), so a gigabyte costs a second to make.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class HostileFile:
    name: str  # what it attacks
    filename: str
    data: bytes
    content_type: str | None = None


def deflated_run(byte: bytes, mib: int, zlib_wrapper: bool = False) -> tuple[bytes, int]:
    """`mib` MiB of `byte`, deflated (raw for a ZIP member, or in a zlib wrapper for a
    PDF stream), and the data's checksum (CRC-32, or the wrapper's Adler-32)."""
    block = byte * MIB
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = compressor.compress(block) + compressor.flush(zlib.Z_SYNC_FLUSH)
    repeated = compressor.compress(block) + compressor.flush(zlib.Z_SYNC_FLUSH)
    raw = first + repeated * (mib - 1) + compressor.flush()
    if not zlib_wrapper:
        crc = 0
        for _ in range(mib):
            crc = zlib.crc32(block, crc)
        return raw, crc
    adler = 1
    for _ in range(mib):
        adler = zlib.adler32(block, adler)
    return b"\x78\xda" + raw + struct.pack(">I", adler), adler


# A ZIP member: name, raw deflate data, uncompressed size, CRC-32.
Member = tuple[str, bytes, int, int]


def zip_archive(members: list[Member]) -> bytes:
    """A ZIP written by hand, so that a member's data can be a prebuilt deflate stream."""
    out = bytearray()
    directory = bytearray()
    for name, data, size, crc in members:
        encoded = name.encode()
        offset = len(out)
        common = struct.pack("<HHHHHIII", 20, 0, 8, 0, 0, crc, len(data), size)
        out += b"PK\x03\x04" + common + struct.pack("<HH", len(encoded), 0) + encoded + data
        directory += (
            b"PK\x01\x02"
            + struct.pack("<H", 20)
            + common
            + struct.pack("<HHHHHII", len(encoded), 0, 0, 0, 0, 0, offset)
            + encoded
        )
    end = struct.pack("<HHHHIIH", 0, 0, len(members), len(members), len(directory), len(out), 0)
    return bytes(out + directory + b"PK\x05\x06" + end)


def deflated(name: str, data: bytes) -> Member:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return name, compressor.compress(data) + compressor.flush(), len(data), zlib.crc32(data)


_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_CONTENT_TYPES = (
    '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
    'content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-'
    'package.relationships+xml"/><Override PartName="/word/document.xml" ContentType="'
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
    '"/></Types>'
)
_RELS = (
    '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/'
    '2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
    'officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/>'
    "</Relationships>"
)


def docx_bomb(mib: int = 1024) -> bytes:
    """A DOCX whose document.xml declares (and holds) `mib` MiB: a 1 MB download."""
    data, crc = deflated_run(b" ", mib)
    return zip_archive(
        [
            deflated("[Content_Types].xml", _CONTENT_TYPES.encode()),
            deflated("_rels/.rels", _RELS.encode()),
            ("word/document.xml", data, mib * MIB, crc),
        ]
    )


def minimal_pdf(content: bytes, filters: bytes = b"", title: bytes | None = None) -> bytes:
    """A one-page PDF with `content` as its content stream (Helvetica as /F1), with a
    correct xref table; `filters` (e.g. b"/Filter /FlateDecode") go in the stream's dict."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d %s>>\nstream\n%s\nendstream" % (len(content), filters, content),
    ]
    if title is not None:
        objects.append(b"<< /Title " + title + b" >>")
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


def pdf_bomb(mib: int = 1024) -> bytes:
    """A PDF whose one content stream inflates to `mib` MiB of spaces."""
    stream, _ = deflated_run(b" ", mib, zlib_wrapper=True)
    return minimal_pdf(stream, b"/Filter /FlateDecode ")


def hostile_corpus(scale: float = 1.0) -> list[HostileFile]:
    """The corpus; `scale` shrinks the inputs (tests of the harness itself use less)."""

    def n(count: int) -> int:
        return max(1, int(count * scale))

    builders: list[tuple[str, str, Callable[[], bytes]]] = [
        # 0.73 s for 8,000 spaces with the old heading pattern; a 1 MB line took hours.
        ("backtracking Markdown", "title.md", lambda: b"# a" + b" " * n(1_000_000) + b"b\n"),
        ("DOCX zip bomb", "bomb.docx", lambda: docx_bomb(n(1024))),
        ("PDF huge compressed stream", "bomb.pdf", lambda: pdf_bomb(n(1024))),
        ("JSON nested deep", "deep.json", lambda: b"[" * n(200_000) + b"]" * n(200_000)),
        (
            "JSON long key over long array",
            "wide.json",
            lambda: b'{"' + b"k" * n(10 * MIB) + b'": [' + b"1," * n(1_000_000) + b"1]}",
        ),
        ("HTML nested tags", "nested.html", lambda: b"<div>" * n(1_000_000) + b"deep text"),
        ("HTML unclosed tags", "unclosed.html", lambda: b"<a " * n(200_000)),
        ("invalid UTF-8", "broken.txt", lambda: (b"caf\xe9 \xff\xc3(" + b"\x81\x8d") * n(500_000)),
        ("NUL bytes", "nul.txt", lambda: b"text\x00" * n(1_000_000)),
    ]
    return [HostileFile(name, filename, build()) for name, filename, build in builders]
