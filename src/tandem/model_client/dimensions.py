"""The start-up check shared by the workers and the API server: the embedding model's
vectors fit the index's vector column."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session, sessionmaker

from tandem.config import ModelCacheSettings
from tandem.db import catalog
from tandem.db.models import EMBEDDING_DIMENSIONS
from tandem.model_files import ModelKind, ModelNotPrepared, locate_prepared

log = logging.getLogger(__name__)


class IncompatibleModel(ValueError):
    """The embedding model's vectors do not fit the index's vector column."""


def check_dimensions(sessions: sessionmaker[Session], model: str, dimensions: int) -> int:
    """Refuse to run when `model` makes vectors of another size than the index stores."""
    with sessions() as session:
        stored = catalog.embedding_dimensions(session)
    if stored != dimensions:
        raise IncompatibleModel(
            f"the embedding model {model!r} makes {dimensions}-dimensional vectors, but the "
            f"index stores {stored} (chunks.embedding is vector({stored})): configure a "
            f"{stored}-dimensional model (TANDEM_EMBEDDING_MODEL), or migrate the schema to "
            f"vector({dimensions}) and re-index every document"
        )
    return stored


def configured_model_dimensions(settings: ModelCacheSettings) -> tuple[str, int]:
    """(model, dimensions) of the configured embedding model, from its prepared manifest;
    where the model is not prepared (an API server without the model cache), the size
    this code's schema was written for."""
    try:
        _, manifest = locate_prepared(
            settings.model_cache,
            settings.embedding_model,
            ModelKind.BI_ENCODER,
            need_weights=False,
        )
    except ModelNotPrepared:
        log.warning(
            "model_manifest_missing model=%s: checking the schema against %d dimensions",
            settings.embedding_model,
            EMBEDDING_DIMENSIONS,
        )
        return settings.embedding_model, EMBEDDING_DIMENSIONS
    return settings.embedding_model, manifest.dimensions
