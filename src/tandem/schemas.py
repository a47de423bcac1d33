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
