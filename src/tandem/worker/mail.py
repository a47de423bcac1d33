"""Extractor for e-mail messages (.eml, RFC 5322) with the standard library's parser: the
subject is the title, sender, recipients and date are metadata, the body is the plain-text
part (or the HTML part as text). Attachments are not indexed."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.errors import MessageError
from email.message import EmailMessage, Message

from tandem.documents.parsed import CorruptFile, Extracted, reason
from tandem.worker.decoding import reject_binary
from tandem.worker.html_text import html_to_text
from tandem.worker.limits import Upload

_HEADERS = (("from", "from"), ("to", "to"), ("cc", "cc"), ("date", "date"))
# The parser's errors on malformed headers and bodies (a bad charset is a LookupError, a
# bad encoded word a ValueError).
_MAIL_ERRORS = (MessageError, ValueError, LookupError, TypeError, IndexError)


def extract_eml(upload: Upload) -> Extracted:
    filename, limits = upload.filename, upload.limits
    reject_binary(filename, upload.data)
    try:
        message = message_from_bytes(upload.data, policy=policy.default)
        mail = isinstance(message, EmailMessage) and _looks_like_mail(message)
        subject = _clean(str(message.get("subject", "") or ""))
        metadata = {
            key: _clean(str(message[name]))[: limits.max_field_chars]
            for name, key in _HEADERS
            if message.get(name)
        }
        body = message.get_body(preferencelist=("plain", "html")) if mail else None
        text, truncated = _body_text(body, limits.max_extracted_chars)
        attachments = sum(1 for _ in message.iter_attachments()) if mail else 0
    except _MAIL_ERRORS as exc:
        raise CorruptFile(filename, f"not a valid e-mail message ({reason(exc)})") from exc
    if not mail:
        raise CorruptFile(filename, "not a valid e-mail message (it has no mail headers)")
    if truncated:
        metadata["truncated"] = "true"
    if attachments:
        metadata["attachments"] = str(attachments)
    return Extracted(title=subject or None, text=text, metadata=metadata)


def _clean(value: str) -> str:
    # Raw 8-bit header bytes come back as lone surrogates, which no database text holds.
    return " ".join(value.encode("utf-8", "replace").decode("utf-8").split())


def _looks_like_mail(message: Message) -> bool:
    # The parser takes any text as a message without headers; a mail has at least one of these.
    return any(message.get(name) for name in ("from", "to", "subject", "date", "message-id"))


def _body_text(body: Message | None, max_chars: int) -> tuple[str, bool]:
    if not isinstance(body, EmailMessage):
        return "", False
    content = body.get_content()
    if not isinstance(content, str):
        return "", False
    content = content.encode("utf-8", "replace").decode("utf-8")
    if body.get_content_subtype() == "html":
        _, text, truncated = html_to_text(content, max_chars)
        return text, truncated
    return content[:max_chars], len(content) > max_chars
