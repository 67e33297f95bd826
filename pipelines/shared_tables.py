"""Commits to the bronze tables that several writers share: quarantine, cdc_schemas and events.

Every CDC topic and every day of raw events appends to them, from Dagster steps and backfill runs in
parallel processes and from the writer threads of `lakehouse ingest cdc --follow`. Concurrent appends to an existing Delta
table do not conflict (delta-rs rebases them), but the first commits race to create the table, and
delta-rs refuses the losers with CommitFailedError; so does a concurrent schema merge, and a MERGE after
any concurrent append (even to another partition).
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

from deltalake.exceptions import CommitFailedError

T = TypeVar("T")

ATTEMPTS = 6


def commit_retrying_conflicts(
    commit: Callable[[], T], attempts: int = ATTEMPTS, before_retry: Callable[[], None] = lambda: None
) -> T:
    """Runs `commit` until delta-rs accepts it. A refused commit wrote nothing, so `commit` may simply
    run again; it must read what it depends on (stored offsets, the table) afresh on each call, or
    `before_retry` must refresh it."""
    for attempt in range(attempts - 1):
        try:
            return commit()
        except CommitFailedError:
            time.sleep(0.05 * 2**attempt)
            before_retry()
    return commit()
