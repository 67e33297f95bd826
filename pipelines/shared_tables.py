"""Commits to bronze tables with more than one writer: quarantine, cdc_schemas, events, and a CDC
topic's table when two runs of the topic overlap.

Concurrent appends to an existing Delta table do not conflict: delta-rs rebases them. But the first
commits race to create a table, and delta-rs refuses the losers with CommitFailedError; so does a
concurrent schema merge, a MERGE after any concurrent append (even to another partition), and a commit
of an app transaction that a concurrent commit also set since the snapshot the writer read.
"""

from __future__ import annotations

import time
from typing import Any, Callable, TypeVar

from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError

T = TypeVar("T")

ATTEMPTS = 6


class TableCreatedMeanwhile(Exception):
    """A commit meant to create its table found that another writer had just created it."""


def write_on_snapshot(table: DeltaTable | None, path: str, data: Any, storage_options: dict | None, **kwargs) -> None:
    """Appends through the snapshot `table`, so delta-rs checks the commit against everything committed
    since it was read (a write by path would load the newest version and check nothing). Without a
    table yet, creates it; if another writer created it first, raises TableCreatedMeanwhile rather than
    append unchecked."""
    if table is not None:
        write_deltalake(table, data, mode="append", **kwargs)
        return
    try:
        write_deltalake(path, data, mode="error", storage_options=storage_options, **kwargs)
    except DeltaError as exc:
        if isinstance(exc, CommitFailedError) or not DeltaTable.is_deltatable(path, storage_options):
            raise
        raise TableCreatedMeanwhile(f"{path} was created by another writer meanwhile") from exc


def commit_retrying_conflicts(
    commit: Callable[[], T], attempts: int = ATTEMPTS, before_retry: Callable[[], None] = lambda: None
) -> T:
    """Runs `commit` until delta-rs accepts it. A refused commit wrote nothing, so `commit` may simply
    run again; it must read what it depends on (stored offsets, the table) afresh on each call, or
    `before_retry` must refresh it, and raise if the conflict was with a run doing the same work."""
    for attempt in range(attempts - 1):
        try:
            return commit()
        except (CommitFailedError, TableCreatedMeanwhile):
            time.sleep(0.05 * 2**attempt)
            before_retry()
    return commit()
