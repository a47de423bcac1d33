"""Cross-request batching on one inference thread; the policy is where the roles differ.

Requests become jobs of tokenized items. One worker thread forms a batch from the items
waiting, runs it (ONNX Runtime releases the GIL, so the event loop keeps accepting and
tokenizing), writes each row into its job and wakes the job's coroutine when complete.

* Latency policy (inference role): never waits to fill a batch; takes the jobs with the
  fewest items left first, so a query overtakes a large request, which is cut into
  batches and streamed through between queries.
  (Running a lone small query on the event loop instead, to save the two thread
  wake-ups, was measured and dropped: at load 15-18 on 2 cores its HTTP p50 read 21.9 ms
  against 6.4 ms through the worker, alternating in one run,
  benchmarks/results/query_isolation_inline.json: one thread doing parse + forward in one burst
  is preempted mid-forward more often than two threads with shorter bursts.)
* Throughput policy (indexing role): jobs in arrival order, a bounded window of their
  items sorted by length, batches of similar lengths under a padded-token budget.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tandem.config import SchedulingLimits
from tandem.model_files import FloatArray
from tandem.model_server.metrics import ModelServerMetrics
from tandem.model_server.onnx_model import TokenizedItem

log = logging.getLogger(__name__)

# In a length-sorted batch, stop adding items shorter than this share of the longest:
# padding them would cost more than running them in the next batch.
MIN_LENGTH_RATIO = 0.5


class QueueFull(Exception):
    """Admission control: the caller should answer 429 with Retry-After."""


class SchedulerStopped(Exception):
    pass


@dataclass(eq=False)
class _Job:
    items: list[TokenizedItem]
    future: asyncio.Future[FloatArray]
    loop: asyncio.AbstractEventLoop
    seq: int
    pending: list[int] = field(default_factory=list)  # item indices not yet batched
    results: FloatArray | None = None
    unfinished: int = 0

    def __post_init__(self) -> None:
        self.pending = list(range(len(self.items)))
        self.unfinished = len(self.items)


@dataclass(frozen=True, slots=True)
class _Slot:
    job: _Job
    index: int

    @property
    def length(self) -> int:
        return len(self.job.items[self.index])


class BatchScheduler:
    def __init__(
        self,
        run_batch: Callable[[list[TokenizedItem]], FloatArray],
        limits: SchedulingLimits,
        metrics: ModelServerMetrics,
        name: str,
        *,
        compute: threading.Lock | None = None,
    ) -> None:
        self._run_batch = run_batch
        # One forward pass at a time per process (models share the CPUs): schedulers of
        # one process share this lock.
        self._compute = compute or threading.Lock()
        self._limits = limits
        self._metrics = metrics
        self._name = name
        # The labelled child once: its lookup takes a lock, several times per request.
        self._depth = metrics.queue_depth.labels(name)
        self._jobs: list[_Job] = []
        self._queued = 0
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name=f"batcher-{name}", daemon=True)

    @property
    def queued_items(self) -> int:
        return self._queued

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Finish what is queued (up to ``timeout``), then end the worker thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def reserve(self, count: int) -> Reservation:
        """Admit `count` items, or raise QueueFull, before any work is spent on them: the
        caller tokenizes only what was admitted, so a burst of large requests is refused
        at the cost of parsing their bodies, and the items being tokenized count against
        the bound like the queued ones."""
        with self._cond:
            if self._stopping:
                raise SchedulerStopped("the server is shutting down")
            # An empty queue always admits, so a request larger than the bound still runs.
            if self._queued and self._queued + count > self._limits.max_queue_items:
                raise QueueFull(f"{self._name} queue is full ({self._queued} items waiting)")
            self._queued += count
            self._depth.set(self._queued)
        return Reservation(self, count)

    async def submit(self, items: list[TokenizedItem]) -> FloatArray:
        with self.reserve(len(items)) as reservation:
            return await reservation.submit(items)

    def _enqueue(self, reservation: Reservation, items: list[TokenizedItem]) -> _Job:
        loop = asyncio.get_running_loop()
        job = _Job(items=items, future=loop.create_future(), loop=loop, seq=next(self._seq))
        with self._cond:
            if self._stopping:
                self._queued -= reservation.count
                self._depth.set(self._queued)
                raise SchedulerStopped("the server is shutting down")
            self._queued += len(items) - reservation.count  # the reservation becomes the job
            self._jobs.append(job)
            self._depth.set(self._queued)
            self._cond.notify()
        return job

    def _release(self, count: int) -> None:
        with self._cond:
            self._queued -= count
            self._depth.set(self._queued)

    # --- worker thread -------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._stopping:
                    self._cond.wait()
                if not self._jobs:
                    return
                batch = self._next_batch()
                self._queued -= len(batch)
                self._depth.set(self._queued)
            if batch:
                self._execute(batch)

    def _next_batch(self) -> list[_Slot]:
        # No batch is running while this is called, so a cancelled job has nothing in flight.
        live = []
        for job in self._jobs:
            if job.future.cancelled():
                self._queued -= len(job.pending)
            else:
                live.append(job)
        self._jobs = live
        if self._limits.shortest_first:
            return self._latency_batch()
        return self._throughput_batch()

    def _fits(self, count: int, longest: int) -> bool:
        return count <= self._limits.max_batch_size and count * longest <= (
            self._limits.max_batch_tokens
        )

    def _latency_batch(self) -> list[_Slot]:
        batch: list[_Slot] = []
        longest = 0
        for job in sorted(
            (j for j in self._jobs if j.pending), key=lambda j: (len(j.pending), j.seq)
        ):
            while job.pending:
                slot = _Slot(job, job.pending[0])
                wider = max(longest, slot.length)
                if batch and not self._fits(len(batch) + 1, wider):
                    return batch
                batch.append(slot)
                longest = wider
                job.pending.pop(0)
        return batch

    def _throughput_batch(self) -> list[_Slot]:
        window: list[_Slot] = []
        for job in self._jobs:
            for index in job.pending:
                window.append(_Slot(job, index))
                if len(window) >= self._limits.sort_window:
                    break
            if len(window) >= self._limits.sort_window:
                break
        window.sort(key=lambda s: s.length, reverse=True)
        batch: list[_Slot] = []
        for slot in window:
            if batch and (
                not self._fits(len(batch) + 1, batch[0].length)
                or slot.length < MIN_LENGTH_RATIO * batch[0].length
            ):
                break
            batch.append(slot)
        for job, slots in itertools.groupby(
            sorted(batch, key=lambda s: s.job.seq), key=lambda s: s.job
        ):
            taken = {s.index for s in slots}
            job.pending = [i for i in job.pending if i not in taken]
        return batch

    def _execute(self, batch: list[_Slot]) -> None:
        items = [slot.job.items[slot.index] for slot in batch]
        started = time.perf_counter()
        try:
            with self._compute:
                output = self._run_batch(items)
        except Exception as exc:
            log.exception("batch_failed scheduler=%s size=%d", self._name, len(batch))
            self._fail_jobs({slot.job for slot in batch}, exc)
            return
        elapsed = time.perf_counter() - started
        finished: list[_Job] = []
        with self._cond:
            for row, slot in zip(output, batch, strict=True):
                job = slot.job
                if job.results is None:
                    job.results = np.empty((len(job.items), output.shape[1]), dtype=np.float32)
                job.results[slot.index] = row
                job.unfinished -= 1
                if job.unfinished == 0:
                    finished.append(job)
            self._jobs = [j for j in self._jobs if j.unfinished]
        # Wake the waiting requests first: the metrics below are off their latency path.
        for job in finished:
            job.loop.call_soon_threadsafe(_resolve, job.future, job.results)
        self._metrics.observe_batch(
            self._name, size=len(batch), tokens=len(batch) * max(map(len, items)), seconds=elapsed
        )

    def _fail_jobs(self, jobs: set[_Job], exc: Exception) -> None:
        with self._cond:
            for job in jobs:
                self._queued -= len(job.pending)
                job.pending.clear()
            self._jobs = [j for j in self._jobs if j not in jobs]
        for job in jobs:
            job.loop.call_soon_threadsafe(_reject, job.future, exc)


class Reservation:
    """Queue space held for items not yet tokenized: submitted once, else released when
    the `with` block ends (a refused input, an error, a cancelled request)."""

    def __init__(self, scheduler: BatchScheduler, count: int) -> None:
        self._scheduler = scheduler
        self.count = count
        self._held = True

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()

    def release(self) -> None:
        if self._held:
            self._held = False
            self._scheduler._release(self.count)

    async def submit(self, items: list[TokenizedItem]) -> FloatArray:
        if not self._held:
            raise RuntimeError("a reservation is submitted once")
        self._held = False
        job = self._scheduler._enqueue(self, items)
        return await job.future


def _resolve(future: asyncio.Future[FloatArray], value: FloatArray | None) -> None:
    if not future.done() and value is not None:
        future.set_result(value)


def _reject(future: asyncio.Future[FloatArray], exc: Exception) -> None:
    if not future.done():
        future.set_exception(exc)
