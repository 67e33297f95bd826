"""Commits to bronze tables with more than one writer: quarantine, cdc_schemas, events, and a CDC
topic's table when two runs of the topic overlap.

Writers commit through a snapshot they read (`write_deltalake(table, ...)`), and delta-rs checks such a
commit against every commit made since: it refuses one that sets an app transaction a concurrent commit
also set (a run doing the same work), and also a MERGE after any concurrent append and a concurrent
schema merge. Concurrent appends to an existing table do not conflict; delta-rs rebases them.

A commit that creates its table is checked against nothing: two creators both succeed, each with its
rows. So tables are created empty first (`open_or_create`), and the first rows go through a snapshot too.
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError, TableNotFoundError

T = TypeVar("T")

ATTEMPTS = 6


def open_table(path: str, storage_options: dict[str, str] | None) -> DeltaTable | None:
    """The table at `path` as it is now; None if there is none yet."""
    try:
        return DeltaTable(path, storage_options=storage_options or None)
    except TableNotFoundError:
        return None


def open_or_create(
    path: str,
    schema: pa.Schema,
    storage_options: dict[str, str] | None,
    partition_by: list[str] | None = None,
    configuration: dict[str, str] | None = None,
) -> DeltaTable:
    """The table at `path` as it is now, created empty first if there is none."""
    table = open_table(path, storage_options)
    if table is not None:
        return table
    try:
        DeltaTable.create(path, schema, mode="ignore", partition_by=partition_by, configuration=configuration,
                          storage_options=storage_options)
    except CommitFailedError:
        pass  # another writer created it at the same moment
    return DeltaTable(path, storage_options=storage_options)


def commit_retrying_conflicts(
    commit: Callable[[], T], attempts: int = ATTEMPTS, before_retry: Callable[[], None] = lambda: None
) -> T:
    """Runs `commit` until delta-rs accepts it. A refused commit wrote nothing, so `commit` may simply
    run again; it must read what it depends on (stored offsets, the table) afresh on each call, or
    `before_retry` must refresh it, and raise if the conflict was with a run doing the same work."""
    for attempt in range(attempts - 1):
        try:
            return commit()
        except CommitFailedError:
            time.sleep(0.05 * 2**attempt)
            before_retry()
    return commit()
