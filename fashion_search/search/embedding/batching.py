"""One model call for many concurrent requests, and work prepared ahead of the model.

A server's request threads each hold a few photos' model inputs; calling the model once per
request leaves most of a CPU's batch throughput unused. :class:`ModelBatcher` queues the
requests, and one thread of its own calls the model on everything waiting (up to
``max_batch`` photos, after at most ``max_wait_s`` for more to arrive), then hands each request
its rows. When the model is idle a lone request waits only ``max_wait_s``; under load the
queue fills while the model runs, so batches form without waiting at all.
"""
from __future__ import annotations

import queue
import threading
import time
from collections import deque
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, TypeVar

import numpy as np

T = TypeVar("T")
R = TypeVar("R")
Inputs = list[np.ndarray]  # a model's inputs: one array per model input, photos along axis 0


@dataclass
class _Job:
    inputs: Inputs
    result: Future = field(default_factory=Future)

    @property
    def photos(self) -> int:
        return len(self.inputs[0])


class BatcherClosedError(RuntimeError):
    """The batcher was closed (the service is shutting down)."""


class ModelBatcher:
    """Gathers concurrent :meth:`run` calls into single calls of ``predict``."""

    def __init__(self, predict: Callable[[Inputs], np.ndarray], max_batch: int = 16, max_wait_s: float = 0.002):
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError(f"max_batch must be ≥ 1 and max_wait_s ≥ 0, got {max_batch} and {max_wait_s}")
        self.predict, self.max_batch, self.max_wait_s = predict, max_batch, max_wait_s
        self.calls = 0  # model calls made, for /stats and tests
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._carried: _Job | None = None  # a job that did not fit the last batch: first in the next
        self._closed = False
        self._closing = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name="model-batcher", daemon=True)
        self._thread.start()

    def run(self, inputs: Inputs) -> np.ndarray:
        """The model's output for ``inputs``, computed in a batch with whatever else is waiting."""
        job = _Job(inputs)
        with self._closing:  # nothing is queued behind the closing sentinel
            if self._closed:
                raise BatcherClosedError("the model batcher is closed")
            self._queue.put(job)
        return job.result.result()

    def close(self) -> None:
        """Finish the jobs already queued, then stop the thread."""
        with self._closing:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._thread.join()

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        """``first`` and the jobs that arrive within the wait and fit the batch; whether to stop."""
        jobs, photos = [first], first.photos
        deadline = time.monotonic() + self.max_wait_s
        while photos < self.max_batch:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return jobs, False
            if job is None:
                return jobs, True
            if photos + job.photos > self.max_batch:
                self._carried = job
                break
            jobs.append(job)
            photos += job.photos
        return jobs, False

    def _serve(self) -> None:
        stop = False
        while not stop:
            first, self._carried = self._carried or self._queue.get(), None
            if first is None:
                break
            jobs, stop = self._gather(first)
            self._compute(jobs)

    def _compute(self, jobs: list[_Job]) -> None:
        try:
            inputs = [np.concatenate(parts) for parts in zip(*(job.inputs for job in jobs))]
            outputs = self.predict(inputs)
            self.calls += 1
        except BaseException as err:  # every waiting request gets the error, and the thread lives on
            for job in jobs:
                job.result.set_exception(err)
            return
        start = 0
        for job in jobs:
            job.result.set_result(outputs[start:start + job.photos])
            start += job.photos


def prefetched(pool: Executor, function: Callable[[T], R], items: Iterable[T], ahead: int) -> Iterator[R]:
    """``function`` of each item, in order, computed in ``pool`` at most ``ahead`` items before
    the one the caller is at (so memory stays bounded however many items there are)."""
    pending: deque[Future] = deque()
    for item in items:
        pending.append(pool.submit(function, item))
        if len(pending) > ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
