"""Wire schemas of the API server (documents, index attempts, search), shared with its
clients (`tandem.client`, the CLI, the web UI's expectations in tests)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from tandem.index.protocol import SearchMode
from tandem.wire_fields import Flag, MetadataValue, StoredText

DocumentId = Annotated[
    StoredText, Field(min_length=1, max_length=512, pattern=r"^[^\s/\x00][^\x00]*$")
]
Metadata = dict[StoredText, MetadataValue]


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: DocumentId
    title: Annotated[StoredText, Field(min_length=1, max_length=1000)]
    text: Annotated[StoredText, Field(min_length=1)]
    # Where it came from, shown with results (a path or URL); the id when not given.
    path: Annotated[StoredText | None, Field(max_length=2000)] = None
    metadata: Metadata = Field(default_factory=dict)


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    documents: Annotated[list[DocumentIn], Field(min_length=1)]


class QueuedDocument(BaseModel):
    document_id: str
    filename: str


class IngestResponse(BaseModel):
    attempt_id: str
    documents: list[QueuedDocument]


class AttemptItemOut(BaseModel):
    position: int
    document_id: str
    filename: str
    status: str
    error: str | None
    chunk_count: int


class AttemptOut(BaseModel):
    id: str
    status: str
    error: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    total: int
    done: int
    failed: int
    items: list[AttemptItemOut]


class DocumentOut(BaseModel):
    id: str
    title: str
    source: str  # the source's name: `upload` for files and batches sent to the API
    path: str  # the document's path inside its source
    content_type: str
    metadata: dict[str, object]
    chunk_count: int
    size_bytes: int
    created_at: str
    updated_at: str


class DocumentPage(BaseModel):
    items: list[DocumentOut]
    total: int
    offset: int
    limit: int


class ChunkOut(BaseModel):
    ordinal: int
    text: str


class DocumentDetail(DocumentOut):
    chunks: list[ChunkOut]


_ISO_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}")


def _iso_date_time(value: object) -> object:
    # Pydantic would also take a number or a digit string as seconds since 1970: a client
    # bug worth a 422, not a value to guess at.
    if value is not None and not (isinstance(value, str) and _ISO_DATE_TIME.match(value)):
        raise ValueError("must be an ISO 8601 date and time, such as 2024-05-01T00:00:00Z")
    return value


IsoDateTime = Annotated[datetime, BeforeValidator(_iso_date_time)]


class SearchFiltersIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    document_ids: list[StoredText] = Field(default_factory=list, max_length=1000)
    sources: list[StoredText] = Field(default_factory=list, max_length=1000)
    content_types: list[StoredText] = Field(default_factory=list, max_length=20)
    metadata: Metadata = Field(default_factory=dict)
    # Paths (inside their source) that start with this, taken literally (no wildcards).
    path_prefix: Annotated[StoredText | None, Field(max_length=2000)] = None
    # Documents updated at or after this ISO 8601 date and time (no offset: UTC).
    updated_since: IsoDateTime | None = None


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: Annotated[StoredText, Field(min_length=1)]
    limit: Annotated[int, Field(strict=True, ge=1, le=100)] = 10
    mode: SearchMode = SearchMode.HYBRID
    alpha: Annotated[float | None, Field(strict=True, ge=0.0, le=1.0)] = None
    rerank: Flag = False
    filters: SearchFiltersIn | None = None
    # One result per document (its best chunk); false: every chunk that ranks.
    group_by_document: Flag = True
    # Results of the ranking to skip: the next page is at offset + limit.
    offset: Annotated[int, Field(strict=True, ge=0, le=1000)] = 0


class SearchHitOut(BaseModel):
    document_id: str
    chunk: int
    title: str
    source: str
    path: str
    snippet: str  # HTML-escaped text; matched query terms wrapped in <mark>
    score: float


class SearchResponse(BaseModel):
    query: str
    mode: SearchMode  # the mode actually used
    degraded: bool  # True when the inference server was unavailable: keyword results only
    notice: str | None
    reranked: bool
    took_ms: float
    offset: int  # of the first result in the ranking
    grouped: bool  # one result per document
    next_offset: int | None  # the next page's offset; None: the ranking ends here
    results: list[SearchHitOut]
