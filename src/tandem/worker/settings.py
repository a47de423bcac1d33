"""How a worker batches, leases and reports its work; read once by `run_worker`.

The connection settings (database, Redis, indexing server, concurrency) are
`tandem.config.WorkerSettings`; these tune the pipeline around them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tandem.worker.stages import Stage


class PipelineSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    # One claim takes up to this many items (short documents share embedding requests) or
    # this many payload bytes (~64 passages of 256 tokens), whichever comes first.
    batch_items: Annotated[
        int, Field(validation_alias=AliasChoices("TANDEM_BATCH_ITEMS"), gt=0, le=1000)
    ] = 64
    batch_bytes: Annotated[
        int, Field(validation_alias=AliasChoices("TANDEM_BATCH_BYTES"), gt=0)
    ] = 96 * 1024
    # A claimed item belongs to its worker this long past the last heartbeat (sent every
    # third of it); then any worker may take it over. Worst case to resume a killed
    # worker's items: lease + sweep interval.
    lease_seconds: Annotated[
        float, Field(validation_alias=AliasChoices("TANDEM_LEASE_SECONDS"), ge=1.0)
    ] = 30.0
    # A batch still running this long after its claim is presumed stuck: its leases are
    # no longer extended, so another worker takes its items over.
    max_batch_seconds: Annotated[
        float, Field(validation_alias=AliasChoices("TANDEM_MAX_BATCH_SECONDS"), gt=0)
    ] = 900.0
    sweep_seconds: Annotated[
        float, Field(validation_alias=AliasChoices("TANDEM_SWEEP_SECONDS"), gt=0)
    ] = 5.0
    # Unexpected errors (or dead workers) an item may cause before it is failed for good.
    max_failures: Annotated[
        int, Field(validation_alias=AliasChoices("TANDEM_MAX_ITEM_FAILURES"), ge=1)
    ] = 3
    # The first retry after an unexpected error waits this long, doubling after each.
    retry_base_seconds: Annotated[
        float, Field(validation_alias=AliasChoices("TANDEM_RETRY_BASE_SECONDS"), ge=0)
    ] = 5.0
    # Per claimed batch, one JSON line of stage timings (for benchmarks and operators).
    timings_file: Annotated[
        Path | None, Field(validation_alias=AliasChoices("TANDEM_WORKER_TIMINGS_FILE"))
    ] = None
    # Fault injection for tests: a thread reaching this stage appends a line to
    # `hold_file` and stops there, so a test can kill the worker at that exact point.
    hold_at: Annotated[
        Stage | None, Field(validation_alias=AliasChoices("TANDEM_WORKER_HOLD_AT"))
    ] = None
    hold_file: Annotated[
        Path | None, Field(validation_alias=AliasChoices("TANDEM_WORKER_HOLD_FILE"))
    ] = None
    # Let the stage pass this many times first (e.g. hold mid-way through a long ingest).
    hold_after: Annotated[
        int, Field(validation_alias=AliasChoices("TANDEM_WORKER_HOLD_AFTER"), ge=0)
    ] = 0

    @model_validator(mode="after")
    def _hold_needs_file(self) -> PipelineSettings:
        if self.hold_at is not None and self.hold_file is None:
            raise ValueError("TANDEM_WORKER_HOLD_AT needs TANDEM_WORKER_HOLD_FILE")
        return self
