"""Wire schemas shared by the model server and its clients (API server, workers, tests).

Onyx-compatible (`/encoder/*`), OpenAI-compatible (`/v1/embeddings`) and TEI-compatible
(`/embed`, `/rerank`) shapes, plus Tandem's error envelope.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Embedding = list[float]
PositiveInt = Annotated[int, Field(gt=0)]


class TextType(StrEnum):
    QUERY = "query"
    PASSAGE = "passage"


# --- Onyx model-server shapes -------------------------------------------------------


class EmbedRequest(BaseModel):
    model_config = ConfigDict(protected_namespaces=(), extra="ignore")

    texts: list[str]
    model_name: str | None = None
    max_context_length: PositiveInt = 512
    normalize_embeddings: bool = True
    text_type: TextType = TextType.PASSAGE
    manual_query_prefix: str | None = None
    manual_passage_prefix: str | None = None
    # Onyx clients may name a cloud provider; this server embeds locally only.
    provider_type: str | None = None


class EmbedResponse(BaseModel):
    embeddings: list[Embedding]


class CrossEncoderRequest(BaseModel):
    model_config = ConfigDict(protected_namespaces=(), extra="ignore")

    query: str
    documents: list[str]
    model_name: str | None = None
    provider_type: str | None = None


class CrossEncoderResponse(BaseModel):
    scores: list[float]


# --- OpenAI /v1/embeddings ----------------------------------------------------------


class OpenAIEmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input: str | list[str]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: PositiveInt | None = None
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


# --- Hugging Face TEI /embed and /rerank --------------------------------------------


class TEIEmbedRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    inputs: str | list[str]
    normalize: bool = True
    truncate: bool = True
    dimensions: PositiveInt | None = None


class TEIRerankRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    query: str
    texts: list[str]
    raw_scores: bool = False
    return_text: bool = False
    truncate: bool = True


class TEIRank(BaseModel):
    index: int
    score: float
    text: str | None = None


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

DocumentId = Annotated[str, Field(min_length=1, max_length=512, pattern=r"^[^\s/][^\x00]*$")]


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: DocumentId
    title: Annotated[str, Field(min_length=1, max_length=1000)]
    text: Annotated[str, Field(min_length=1)]
    source: Annotated[str | None, Field(max_length=2000)] = None
    metadata: dict[str, str | int | float | bool] = Field(default_factory=dict)


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

    document_ids: list[str] = Field(default_factory=list, max_length=1000)
    sources: list[str] = Field(default_factory=list, max_length=1000)
    content_types: list[str] = Field(default_factory=list, max_length=20)
    metadata: dict[str, str | int | float | bool] = Field(default_factory=dict)


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: Annotated[str, Field(min_length=1)]
    limit: Annotated[int, Field(ge=1, le=100)] = 10
    mode: SearchModeName = SearchModeName.HYBRID
    alpha: Annotated[float | None, Field(ge=0.0, le=1.0)] = None
    rerank: bool = False
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
