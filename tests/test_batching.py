"""The model batcher: concurrent calls share model calls, each caller gets its own rows."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from fashion_search.search.embedding.batching import BatcherClosedError, ModelBatcher, prefetched


class SlowDoubler:
    """A model that doubles its input, slowly enough for requests to pile up; records batch sizes."""

    def __init__(self, seconds: float = 0.02):
        self.seconds, self.sizes = seconds, []

    def __call__(self, inputs: list[np.ndarray]) -> np.ndarray:
        self.sizes.append(len(inputs[0]))
        time.sleep(self.seconds)
        return inputs[0] * 2 + inputs[1][:, :1]


def request(i: int, photos: int = 1) -> list[np.ndarray]:
    return [np.full((photos, 3), float(i)), np.full((photos, 2), 100.0 * i)]


def test_concurrent_requests_share_model_calls_and_each_gets_its_own_rows():
    model = SlowDoubler()
    batcher = ModelBatcher(model, max_batch=8, max_wait_s=0.005)
    try:
        with ThreadPoolExecutor(24) as pool:
            answers = list(pool.map(lambda i: batcher.run(request(i, 1 + i % 3)), range(48)))
    finally:
        batcher.close()
    for i, answer in enumerate(answers):
        assert answer.shape == (1 + i % 3, 3) and np.all(answer == 2 * i + 100 * i)
    assert batcher.calls == len(model.sizes) < 48 / 2  # most calls served several requests
    assert max(model.sizes) <= 8 and sum(model.sizes) == sum(1 + i % 3 for i in range(48))


def test_a_request_larger_than_the_batch_runs_alone():
    model = SlowDoubler(0.0)
    batcher = ModelBatcher(model, max_batch=4, max_wait_s=0.0)
    try:
        assert batcher.run(request(1, 10)).shape == (10, 3)
    finally:
        batcher.close()
    assert model.sizes == [10]


def test_a_failing_model_call_fails_its_requests_and_the_batcher_goes_on():
    calls = {"n": 0}

    def flaky(inputs: list[np.ndarray]) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 1:
            raise MemoryError("out of memory")
        return inputs[0]

    batcher = ModelBatcher(flaky, max_batch=4, max_wait_s=0.0)
    try:
        with pytest.raises(MemoryError, match="out of memory"):
            batcher.run(request(1))
        assert np.all(batcher.run(request(2)) == 2)
    finally:
        batcher.close()


def test_closing_finishes_queued_work_then_refuses_new_requests():
    model = SlowDoubler(0.2)
    batcher = ModelBatcher(model, max_batch=1, max_wait_s=0.0)
    results = []
    threads = [threading.Thread(target=lambda i=i: results.append(batcher.run(request(i)))) for i in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.1)  # all three queued, the first one running
    batcher.close()
    for thread in threads:
        thread.join(5)
    assert len(results) == 3
    with pytest.raises(BatcherClosedError):
        batcher.run(request(4))


def test_nonsense_settings_are_refused():
    with pytest.raises(ValueError, match="max_batch"):
        ModelBatcher(SlowDoubler(), max_batch=0)


def test_prefetched_keeps_order_and_stays_at_most_ahead_of_the_caller():
    started: list[int] = []

    def square(i: int) -> int:
        started.append(i)
        time.sleep(0.001 * (i % 3))  # finishing out of order
        return i * i

    seen = []
    with ThreadPoolExecutor(3) as pool:
        for i, value in enumerate(prefetched(pool, square, range(20), ahead=3)):
            seen.append(value)
            assert len(started) <= i + 1 + 3  # never more than 3 items beyond the one consumed
    assert seen == [i * i for i in range(20)]
