"""Bytes that should be text, decoded: a BOM, else UTF-8, else the declared charset, else a
sniffed one (charset-normalizer), else Windows-1252; binary data is refused."""

from __future__ import annotations

import codecs
import re

from charset_normalizer import from_bytes

from tandem.documents.parsed import CorruptFile

# UTF-32 first: its little-endian BOM starts with the UTF-16 one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Unicode category Cc (C0, DEL, C1) minus the whitespace controls \t \n \v \f \r.
_CONTROL_CHARS = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f]")
_MAX_CONTROL_FRACTION = 0.05
# Codecs Python has that are no charset a file is written in (escapes, IDNA labels; and
# punycode decodes in quadratic time): a declared or sniffed one is not trusted.
_NOT_CHARSETS = frozenset({"punycode", "idna", "unicode_escape", "raw_unicode_escape"})
# A sniffed encoding that decodes like Windows-1252 is reported as that, the commonest
# legacy encoding; a sniffed UTF-16/32 without a BOM or NUL bytes is a misfire.
_LEGACY = "cp1252"
_SNIFF_BYTES = 1024 * 1024


def reject_binary(filename: str, data: bytes) -> None:
    # Text in any BOM-less encoding we accept never holds NUL; binaries almost always do.
    if b"\x00" in data:
        raise CorruptFile(filename, "binary data, not text (contains NUL bytes)")


def decode_text(filename: str, data: bytes, charset: str | None = None) -> tuple[str, str]:
    """Decode an upload that should be text; returns (text, encoding). `charset` is the
    declared one (the content type's charset= parameter), tried after UTF-8."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return _check_controls(filename, data.decode(encoding)), encoding
            except UnicodeDecodeError as exc:
                raise CorruptFile(filename, f"invalid {encoding} text ({exc.reason})") from exc
    reject_binary(filename, data)
    try:
        return _check_controls(filename, data.decode("utf-8")), "utf-8"
    except UnicodeDecodeError:
        pass
    for candidate in (_charset(charset), _sniffed(data)):
        if candidate is None:
            continue
        encoding = candidate
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if encoding != _LEGACY and _decodes_as_legacy(data, text):
            encoding = _LEGACY
        return _check_controls(filename, text), encoding
    # Legacy "ANSI" text is common in uploads. cp1252 (not latin-1, which accepts any byte)
    # leaves five bytes undefined, and the control-character check catches most other junk.
    try:
        return _check_controls(filename, data.decode(_LEGACY)), _LEGACY
    except UnicodeDecodeError as exc:
        raise CorruptFile(filename, "not UTF-8, UTF-16 or Windows-1252 text") from exc


def _charset(name: str | None) -> str | None:
    """A codec name for a charset, or None for one Python lacks or that is no charset."""
    if not name:
        return None
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        return None
    # The codec registry also holds bytes-to-bytes codecs (base64, zlib): not text.
    text_codec = getattr(codecs.lookup(codec), "_is_text_encoding", True)
    return None if codec in _NOT_CHARSETS or not text_codec else codec


def _sniffed(data: bytes) -> str | None:
    # charset-normalizer samples its input; a megabyte (cut at a line end, never inside a
    # multi-byte character) is plenty to tell, and bounds its time.
    sample = data if len(data) <= _SNIFF_BYTES else data[: data.rfind(b"\n", 0, _SNIFF_BYTES) + 1]
    matches = from_bytes(sample or data[:_SNIFF_BYTES])
    best = matches.best()
    if best is None:
        return None
    # Short Western text fits several code pages about equally: prefer the common one.
    if any(_charset(m.encoding) == _LEGACY and m.chaos <= best.chaos + 0.1 for m in matches):
        return _LEGACY
    codec = _charset(best.encoding)
    return None if codec is None or codec.startswith(("utf_16", "utf_32")) else codec


def _decodes_as_legacy(data: bytes, text: str) -> bool:
    try:
        return data.decode(_LEGACY) == text
    except UnicodeDecodeError:
        return False


def _check_controls(filename: str, text: str) -> str:
    # subn counts without building a list of every match (a binary upload has millions).
    if _CONTROL_CHARS.subn("", text)[1] > _MAX_CONTROL_FRACTION * len(text):
        raise CorruptFile(filename, "binary data, not text (too many control characters)")
    return text
