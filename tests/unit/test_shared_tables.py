"""Commits to bronze tables with more than one writer (pipelines/shared_tables.py)."""

import threading

import pyarrow as pa
import pytest
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError

from pipelines.shared_tables import commit_retrying_conflicts, open_or_create

SCHEMA = pa.schema([("writer", pa.int64())])


def _race(n, commit):
    start = threading.Barrier(n)
    errors = []

    def writer(i):
        start.wait()
        try:
            commit(i)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_writers_racing_on_a_new_shared_table_all_land_once(tmp_path):
    """Eight writers (other topics, other days) append to a table that does not exist yet: it is
    created once, and every writer's rows land, each once."""
    path = str(tmp_path / "quarantine")

    def commit(i):
        commit_retrying_conflicts(
            lambda: write_deltalake(open_or_create(path, SCHEMA, None), pa.table({"writer": [i]}), mode="append")
        )

    assert _race(8, commit) == []
    assert sorted(DeltaTable(path).to_pyarrow_table().column("writer").to_pylist()) == list(range(8))


def test_two_writers_of_the_same_app_transaction_on_a_new_table_one_is_refused(tmp_path):
    """Two runs doing the same work (same app transaction) on a table neither found: creating it empty
    first makes the second commit a conflict delta-rs refuses, where two creating commits both land."""
    path = str(tmp_path / "cdc_orders")
    snapshots = [open_or_create(path, SCHEMA, None) for _ in range(2)]
    same_work = CommitProperties(app_transactions=[Transaction("shop.public.orders-0", 5)])
    write_deltalake(snapshots[0], pa.table({"writer": [0]}), mode="append", commit_properties=same_work)
    with pytest.raises(CommitFailedError):
        write_deltalake(snapshots[1], pa.table({"writer": [1]}), mode="append", commit_properties=same_work)
    assert DeltaTable(path).to_pyarrow_table().column("writer").to_pylist() == [0]
