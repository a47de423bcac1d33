"""Validated field types shared by the model server's and the API server's wire schemas:
what counts as text a model can tokenize or PostgreSQL can store, strict numbers and flags.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, WithJsonSchema

# Upper bounds keep every integer a client sends inside what the servers and PostgreSQL
# can hold; the model caps the context further. Numbers are strict: `true` or `95.0` for
# an integer is a client bug worth a 422, not a value to guess at.
ContextLength = Annotated[int, Field(strict=True, gt=0, le=65536)]
Dimensions = Annotated[int, Field(strict=True, gt=0, le=65536)]


def _unicode_text(value: str) -> str:
    # A lone surrogate (U+D800..U+DFFF on its own) is not a Unicode scalar value: JSON's
    # \u escapes can carry one, but a tokenizer or PostgreSQL cannot take it. UTF-8
    # cannot encode one either, which is the fast test (ASCII, the common case, is faster).
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("must be Unicode text: it holds a lone surrogate code point") from None
    return value


def _storable_text(value: str) -> str:
    # PostgreSQL's text and jsonb types cannot hold U+0000.
    if "\x00" in value:
        raise ValueError("must not contain NUL (U+0000) characters")
    return _unicode_text(value)


# Text a model tokenizes: refused with a 422 naming the field when it is not Unicode text.
UnicodeText = Annotated[str, AfterValidator(_unicode_text)]
# Text the API stores or matches in PostgreSQL: additionally no NUL characters.
StoredText = Annotated[str, AfterValidator(_storable_text)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
# JSON booleans only: `0` or `"yes"` for a flag is a client bug worth a 422.
Flag = Annotated[bool, Field(strict=True)]
# Model inputs must be non-empty and not blank. The routes enforce that with a 400 (as
# OpenAI and TEI answer); the OpenAPI document says so.
InputText = Annotated[
    UnicodeText, WithJsonSchema({"type": "string", "minLength": 1, "pattern": "\\S"})
]
InputTexts = Annotated[list[InputText], Field(json_schema_extra={"minItems": 1})]
MetadataValue = StoredText | int | FiniteFloat | bool
