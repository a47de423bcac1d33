"""Wire schemas of the model server, shared with its clients (API server, workers, tests).

Onyx-compatible (`/encoder/*`), OpenAI-compatible (`/v1/embeddings`) and TEI-compatible
(`/embed`, `/rerank`) shapes, plus health and readiness.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict

from tandem.wire.fields import (
    ContextLength,
    Dimensions,
    Flag,
    InputText,
    InputTexts,
    UnicodeText,
)

Embedding = list[float]


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


# --- Health ---------------------------------------------------------------------------


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
