"""Milvus Lite on a busy machine: a connection of this process's own Lite database that fails
("Too many pings", "Connection recovery failed") is tried again, and never blamed on another
process; a collection whose writing fails is written anew."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from fashion_search.params import IndexParams
from fashion_search.search.index import milvus_index
from fashion_search.search.index.milvus_index import MilvusUnavailableError, connect
from fashion_search.search.index.milvus_lite_lock import lock_holders


class Flaky:
    """pymilvus's MilvusClient, failing as it did on a loaded machine for the first ``failures`` tries."""

    def __init__(self, real, failures: int):
        self.real, self.left, self.tries = real, failures, 0

    def __call__(self, uri):
        from pymilvus.exceptions import MilvusException

        self.tries += 1
        if self.left:
            self.left -= 1
            raise MilvusException(message="<_MultiThreadedRendezvous: Too many pings> Connection recovery failed")
        return self.real(uri)


@pytest.fixture
def own_lite(tmp_path, monkeypatch):
    """A Milvus Lite database this process has open (as after the check before embedding)."""
    from pymilvus import MilvusClient

    monkeypatch.setattr(milvus_index, "RETRY_PAUSE_S", 0.01)
    uri = str(tmp_path / "milvus.db")
    MilvusClient(uri)
    assert lock_holders(tmp_path / "milvus.db") == {os.getpid()}
    return uri


def test_a_failed_connection_of_our_own_lite_database_is_tried_again(own_lite, monkeypatch):
    import pymilvus

    flaky = Flaky(pymilvus.MilvusClient, failures=2)
    monkeypatch.setattr(pymilvus, "MilvusClient", flaky)
    assert connect(own_lite).list_collections() == [] and flaky.tries == 3


def test_our_own_lite_database_failing_for_good_is_said_as_such_not_as_another_process(own_lite, monkeypatch):
    import pymilvus

    monkeypatch.setattr(pymilvus, "MilvusClient", Flaky(pymilvus.MilvusClient, failures=99))
    with pytest.raises(MilvusUnavailableError) as raised:
        connect(own_lite)
    said = str(raised.value)
    assert "another process" not in said and "Milvus Lite, running in this process" in said
    assert "Too many pings" in said and f"tried {milvus_index.CONNECT_TRIES} times" in said and "resumes" in said


def test_a_lite_database_let_go_between_a_failed_open_and_the_look_is_opened_on_the_next_try(tmp_path, monkeypatch):
    import pymilvus

    flaky = Flaky(pymilvus.MilvusClient, failures=1)   # its holder let go just after our first try
    monkeypatch.setattr(pymilvus, "MilvusClient", flaky)
    uri = str(tmp_path / "milvus.db")
    assert connect(uri, wait_s=10).list_collections() == [] and flaky.tries == 2
    monkeypatch.setattr(pymilvus, "MilvusClient", Flaky(pymilvus.MilvusClient, failures=1))
    with pytest.raises(Exception, match="cannot open Milvus"):   # without a wait, the first failure is told
        connect(str(tmp_path / "other.db"))


def test_a_collection_whose_writing_failed_is_written_anew(tmp_path, monkeypatch):
    monkeypatch.setattr(milvus_index, "RETRY_PAUSE_S", 0.01)
    real, calls = milvus_index.MilvusVectors.create, []

    def create_failing_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise MilvusUnavailableError("Milvus did not answer the new rows: Connection recovery failed")
        return real(*args, **kwargs)

    monkeypatch.setattr(milvus_index.MilvusVectors, "create", create_failing_once)
    vectors = np.eye(3, 4, dtype=np.float32)
    products = pd.DataFrame({"id": ["a", "b", "c"], "path": "", "colours": "red", "deleted": False})
    made = milvus_index.create_collection(tmp_path, 1, {"model": "m"}, vectors, products, "ip", "flat",
                                          IndexParams(backend="milvus"))
    assert len(calls) == 2 and made["milvus"]["collection"].endswith("_1")
    from pymilvus import MilvusClient

    rows = MilvusClient(milvus_index.default_uri(tmp_path)).query(made["milvus"]["collection"], filter="row >= 0",
                                                                  output_fields=["row"])
    assert sorted(r["row"] for r in rows) == [0, 1, 2]
