"""The status page's chart data: the last few minutes of both model servers and the queue.

The samples are taken by the API server's inference-status probe (see `record_samples`);
this module only serves them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from tandem.api.state import ApiState, Authorized
from tandem.model_client.history import MetricsHistory, sample_from
from tandem.model_client.status import INDEXING_STATUS_KEY, ModelServerStatus, read_published
from tandem.wire.errors import error_responses

router = APIRouter(prefix="/api", tags=["operations"])


class MetricsPoint(BaseModel):
    at: float = Field(description="Unix time of the sample (the API server's clock)")
    query_p50_ms: float | None = Field(
        description="Inference model server: median latency of model requests since the "
        "previous sample, in ms (from its Prometheus histogram); null when none was served"
    )
    query_p99_ms: float | None = Field(description="The same, 99th percentile")
    queries_per_second: float | None = Field(description="Inference model server: requests/s")
    indexing_passages_per_second: float | None = Field(
        description="Indexing model server: passages embedded per second, as the workers "
        "report it; null when no worker reported recently"
    )
    indexing_queue_items: float | None = Field(
        description="Indexing model server: items waiting to be batched"
    )
    worker_items_waiting: int | None = Field(
        description="Uploaded files or documents waiting for a worker; null when the "
        "database could not be read"
    )
    worker_items_running: int | None = Field(
        description="Uploaded files or documents a worker is indexing now"
    )


class MetricsHistoryOut(BaseModel):
    interval_seconds: float = Field(description="Time between samples")
    window_seconds: float = Field(description="How far back the samples reach")
    samples: list[MetricsPoint] = Field(description="Oldest first")


async def get_history(request: Request) -> MetricsHistory:
    history: MetricsHistory = request.app.state.metrics_history
    return history


HistoryDep = Annotated[MetricsHistory, Depends(get_history)]


@router.get(
    "/stats/history",
    dependencies=[Authorized],
    response_model=MetricsHistoryOut,
    responses=error_responses(401),
)
def stats_history(history: HistoryDep) -> MetricsHistoryOut:
    """The status page's charts: query latency, indexing throughput and queues over the
    last few minutes, sampled in memory by this API server (a restart starts afresh)."""
    return MetricsHistoryOut(
        interval_seconds=history.interval_seconds,
        window_seconds=history.window_seconds,
        samples=[MetricsPoint.model_validate(s, from_attributes=True) for s in history.samples()],
    )


def _worker_items(state: ApiState) -> tuple[int, int] | None:
    """(waiting, being indexed) items: PostgreSQL is the work queue (Redis messages only
    say that there is work), read through the partial index of unfinished items."""
    try:
        with state.sessions() as session:
            row = session.execute(
                text(
                    "SELECT count(*) FILTER (WHERE status = 'queued'), "
                    "count(*) FILTER (WHERE status = 'running') "
                    "FROM index_attempt_items WHERE status IN ('queued', 'running')"
                )
            ).one()
    except SQLAlchemyError:
        return None
    return int(row[0]), int(row[1])


def record_samples(state: ApiState, history: MetricsHistory) -> Callable[[ModelServerStatus], None]:
    """The inference probe's publisher: keep the status for /api/stats, and add a sample
    with what the workers last reported about the indexing server and the queue length."""

    def record(status: ModelServerStatus) -> None:
        state.record_inference_status(status)
        indexing = read_published(state.redis, INDEXING_STATUS_KEY)
        # A report older than two probes means no worker is probing: draw a gap.
        max_age = 2.5 * history.interval_seconds
        items = _worker_items(state)
        history.add(sample_from(status, indexing, items, now=time.time(), max_report_age=max_age))

    return record
