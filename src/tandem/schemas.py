"""Wire schemas shared by the model server and its clients (API server, workers, tests).

Onyx-compatible (`/encoder/*`), OpenAI-compatible (`/v1/embeddings`) and TEI-compatible
(`/embed`, `/rerank`) shapes, plus Tandem's error envelope.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

Embedding = list[float]
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


class TextType(StrEnum):
    QUERY = "query"
    PASSAGE = "passage"


# --- Onyx model-server shapes -------------------------------------------------------


class EmbedRequest(BaseModel):
    model_config = ConfigDict(protected_namespaces=(), extra="ignore")

    texts: InputTexts
    model_name: str | None = None
    max_context_length: ContextLength = 512
    normalize_embeddings: Flag = True
    text_type: TextType = TextType.PASSAGE
    manual_query_prefix: UnicodeText | None = None
    manual_passage_prefix: UnicodeText | None = None
    # Onyx clients may name a cloud provider; this server embeds locally only.
    provider_type: str | None = None


class EmbedResponse(BaseModel):
    embeddings: list[Embedding]


class CrossEncoderRequest(BaseModel):
    model_config = ConfigDict(protected_namespaces=(), extra="ignore")

    query: InputText
    documents: InputTexts
    model_name: str | None = None
    provider_type: str | None = None


class CrossEncoderResponse(BaseModel):
    scores: list[float]


# --- OpenAI /v1/embeddings ----------------------------------------------------------


class OpenAIEmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input: InputText | InputTexts
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Dimensions | None = None
    user: str | None = None


class OpenAIEmbedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: Embedding | str  # str when encoding_format is base64 (little-endian float32)


class OpenAIUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class OpenAIEmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIEmbedding]
    model: str
    usage: OpenAIUsage


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int  # Unix time the model was prepared
    owned_by: str


class OpenAIModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIModel]


# --- Hugging Face TEI /embed and /rerank --------------------------------------------


class TEIEmbedRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    inputs: InputText | InputTexts
    normalize: Flag = True
    truncate: Flag = True
    dimensions: Dimensions | None = None


class TEIRerankRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    query: InputText
    texts: InputTexts
    raw_scores: Flag = False
    return_text: Flag = False
    truncate: Flag = True


class TEIRank(BaseModel):
    index: int
    score: float
    text: str | None = None


class TEIEmbeddingModel(BaseModel):
    pooling: str


class TEIModelType(BaseModel):
    embedding: TEIEmbeddingModel


class TEIInfo(BaseModel):
    """TEI's `GET /info`, field for field."""

    model_config = ConfigDict(protected_namespaces=())

    model_id: str
    model_sha: str | None
    model_dtype: str
    model_type: TEIModelType
    max_concurrent_requests: int
    max_input_length: int
    max_batch_tokens: int
    max_batch_requests: int | None
    max_client_batch_size: int
    auto_truncate: bool
    tokenization_workers: int
    version: str
    sha: str | None
    docker_label: str | None


# --- Errors and health --------------------------------------------------------------


class ErrorDetail(BaseModel):
    message: str
    type: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"
    role: str


class ReadyResponse(BaseModel):
    ready: bool
    role: str
    embedding_model: str
    rerank_model: str | None
    threads: int
    detail: str | None = None


# --- API server: documents, index attempts, search ----------------------------------

DocumentId = Annotated[
    StoredText, Field(min_length=1, max_length=512, pattern=r"^[^\s/\x00][^\x00]*$")
]
Metadata = dict[StoredText, MetadataValue]


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: DocumentId
    title: Annotated[StoredText, Field(min_length=1, max_length=1000)]
    text: Annotated[StoredText, Field(min_length=1)]
    source: Annotated[StoredText | None, Field(max_length=2000)] = None
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
    source: str
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


class SearchModeName(StrEnum):
    HYBRID = "hybrid"
    SEMANTIC = "semantic"
    KEYWORD = "keyword"


class SearchFiltersIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    document_ids: list[StoredText] = Field(default_factory=list, max_length=1000)
    sources: list[StoredText] = Field(default_factory=list, max_length=1000)
    content_types: list[StoredText] = Field(default_factory=list, max_length=20)
    metadata: Metadata = Field(default_factory=dict)


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: Annotated[StoredText, Field(min_length=1)]
    limit: Annotated[int, Field(strict=True, ge=1, le=100)] = 10
    mode: SearchModeName = SearchModeName.HYBRID
    alpha: Annotated[float | None, Field(strict=True, ge=0.0, le=1.0)] = None
    rerank: Flag = False
    filters: SearchFiltersIn | None = None


class SearchHitOut(BaseModel):
    document_id: str
    chunk: int
    title: str
    source: str
    snippet: str  # HTML-escaped text; matched query terms wrapped in <mark>
    score: float


class SearchResponse(BaseModel):
    query: str
    mode: SearchModeName  # the mode actually used
    degraded: bool  # True when the inference server was unavailable: keyword results only
    notice: str | None
    reranked: bool
    took_ms: float
    results: list[SearchHitOut]
