"""Wire schemas of the API server (documents, index attempts, search), shared with its
clients (`tandem.api_client.client`, the CLI, the web UI's expectations in tests)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from tandem.search_mode import SearchMode
from tandem.wire.fields import Flag, MetadataValue, StoredText

DocumentId = Annotated[
    StoredText, Field(min_length=1, max_length=512, pattern=r"^[^\s/\x00][^\x00]*$")
]
Metadata = dict[StoredText, MetadataValue]


def iso(value: datetime | None) -> str | None:
    """A timestamp as the wire carries it (ISO 8601), or None."""
    return value.isoformat() if value is not None else None


PrincipalName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]


class AccessIn(BaseModel):
    """Who may read a document: everyone (`public`), or the users and groups named (and
    always its uploader and admins)."""

    model_config = ConfigDict(extra="forbid")

    public: Flag = True
    users: Annotated[list[PrincipalName], Field(max_length=1000)] = Field(default_factory=list)
    groups: Annotated[list[PrincipalName], Field(max_length=1000)] = Field(default_factory=list)


class AccessOut(BaseModel):
    public: bool
    users: list[str]
    groups: list[str]


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: DocumentId
    title: Annotated[StoredText, Field(min_length=1, max_length=1000)]
    text: Annotated[StoredText, Field(min_length=1)]
    # Where it came from, shown with results (a path or URL); the id when not given.
    path: Annotated[StoredText | None, Field(max_length=2000)] = None
    metadata: Metadata = Field(default_factory=dict)
    access: AccessIn | None = None  # public when not given


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
    # added, updated, or unchanged (nothing parsed or embedded); and how many chunks were
    # embedded: the others kept their stored vectors.
    outcome: str | None
    embedded_chunks: int


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
    access: AccessOut


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
    # Built from either name; dumped under the JSON one everywhere, not only by FastAPI.
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    document_id: str
    # The chunk's ordinal in its document, as `ChunkOut.ordinal`; its JSON name stays "chunk"
    # (the public API: clients and the web UI read `hit.chunk`).
    ordinal: int = Field(alias="chunk")
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


SourceName = Annotated[
    str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$", description="lower case, digits, . _ -")
]
_INTERVAL = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MIN_INTERVAL_SECONDS = 10


def interval_seconds(every: str) -> int:
    """`90s`, `10m`, `6h`, `1d` in seconds."""
    match = _INTERVAL.match(every)
    if match is None:
        raise ValueError(f"{every!r} is not an interval such as 90s, 10m, 6h or 1d")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not MIN_INTERVAL_SECONDS <= seconds <= 366 * 86400:
        raise ValueError(f"an interval must be between {MIN_INTERVAL_SECONDS} s and a year")
    return seconds


Globs = Annotated[
    list[Annotated[StoredText, Field(min_length=1, max_length=500)]], Field(max_length=100)
]


class SourceIn(BaseModel):
    """A folder on the workers' host or a web site, kept in sync."""

    model_config = ConfigDict(extra="forbid")

    name: SourceName
    kind: Literal["folder", "web"]
    path: Annotated[StoredText | None, Field(min_length=1, max_length=4096)] = None
    url: Annotated[StoredText | None, Field(min_length=1, max_length=2000)] = None
    include: Globs = Field(default_factory=list)
    exclude: Globs = Field(default_factory=list)
    max_pages: Annotated[int, Field(strict=True, ge=1, le=1_000_000)] = 1000
    max_depth: Annotated[int, Field(strict=True, ge=0, le=100)] = 10
    # Politeness towards the site: requests per second at most (robots.txt may ask less).
    requests_per_second: Annotated[float, Field(gt=0, le=100)] = 10.0
    every: Annotated[str | None, Field(max_length=20)] = None  # e.g. 10m: synced on schedule
    access: AccessIn | None = None  # its documents' readers; public when not given

    @model_validator(mode="after")
    def _complete(self) -> SourceIn:
        if self.kind == "folder":
            if not self.path or not self.path.startswith("/"):
                raise ValueError("a folder source needs an absolute `path` on the workers' host")
            if self.url is not None:
                raise ValueError("a folder source takes `path`, not `url`")
        else:
            if not self.url or not self.url.lower().startswith(("http://", "https://")):
                raise ValueError("a web source needs an http:// or https:// `url`")
            if self.path is not None or self.include or self.exclude:
                raise ValueError("a web source takes `url`, `max_pages`, `max_depth` and a rate")
        if self.every is not None:
            interval_seconds(self.every)
        return self

    def settings(self) -> dict[str, object]:
        if self.kind == "folder":
            return {"path": self.path, "include": self.include, "exclude": self.exclude}
        return {
            "url": self.url,
            "max_pages": self.max_pages,
            "max_depth": self.max_depth,
            "requests_per_second": self.requests_per_second,
        }


class SyncOut(BaseModel):
    id: int
    status: Literal["running", "indexing", "succeeded", "failed", "interrupted"]
    started_at: str
    walked_at: str | None
    finished_at: str | None
    added: int
    updated: int
    unchanged: int
    deleted: int
    failed: int
    errors: list[str]
    attempt_id: str | None


class SourceOut(BaseModel):
    name: str
    kind: Literal["upload", "folder", "web"]
    settings: dict[str, object]
    access: AccessOut
    interval_seconds: int | None
    next_sync_at: str | None
    syncing: bool  # a worker holds its lease: a sync runs now
    last_sync: SyncOut | None


class SourceAccessIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    access: AccessIn


class SourceList(BaseModel):
    items: list[SourceOut]


class SyncRequested(BaseModel):
    name: str
    requested: bool


class CallerOut(BaseModel):
    """Who a key signs in as."""

    user: str | None  # None: a service key, or open access
    key_name: str | None
    scope: Literal["search", "ingest", "admin"]
    reads_everything: bool
    open_access: bool


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: PrincipalName
    admin: Flag = False


class UserOut(BaseModel):
    name: str
    admin: bool
    groups: list[str]


class GroupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: PrincipalName
    members: Annotated[list[PrincipalName], Field(max_length=1000)] = Field(default_factory=list)


class GroupOut(BaseModel):
    name: str
    members: list[str]
