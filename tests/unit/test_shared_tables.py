"""Commits to bronze tables that several writers share (quarantine, cdc_schemas)."""

import threading

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from pipelines.shared_tables import commit_retrying_conflicts


def test_writers_racing_to_create_a_shared_table_all_land(tmp_path):
    """The first appends to a table that does not exist yet race to create it; delta-rs refuses all
    but one (CommitFailedError). Retried, every writer's rows land, each once."""
    path = str(tmp_path / "quarantine")
    start = threading.Barrier(8)
    errors = []

    def writer(i):
        start.wait()
        try:
            commit_retrying_conflicts(lambda: write_deltalake(path, pa.table({"writer": [i]}), mode="append"))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(DeltaTable(path).to_pyarrow_table().column("writer").to_pylist()) == list(range(8))
