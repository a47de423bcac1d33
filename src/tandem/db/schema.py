"""Every table of the schema in one metadata: the models and BM25's statistics tables.
Migrations (autogenerate) and the schema test compare against this, never against
tandem.db.models alone."""

from __future__ import annotations

from sqlalchemy import MetaData

from tandem.db import bm25_tables, models

METADATA: MetaData = models.Base.metadata
# Imported for its tables: they register themselves in the models' metadata.
TABLE_MODULES = (models, bm25_tables)
