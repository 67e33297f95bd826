"""Waiting until Debezium has captured everything committed so far (tests and the demo need this)."""

from __future__ import annotations

import time

import psycopg

from pipelines.settings import Settings
from pipelines.stack.connect import SLOT
from pipelines.stack.processes import StackError


def wait_until_captured(settings: Settings, timeout: float = 120.0) -> str:
    """Block until every change committed before the call is in Kafka; return the watermark LSN.

    A transactional logical-decoding message is a WAL record after all earlier commits. Debezium
    confirms a slot position only after Kafka Connect has flushed the records before it to Kafka, so
    once the slot's confirmed_flush_lsn passes the message, everything before it is in the topics.
    """
    with psycopg.connect(settings.postgres_dsn, autocommit=True) as conn:
        watermark = conn.execute(
            "select pg_logical_emit_message(true, 'lakehouse.watermark', now()::text)::text"
        ).fetchone()[0]
        deadline = time.monotonic() + timeout
        while True:
            row = conn.execute(
                "select confirmed_flush_lsn >= %s::pg_lsn, confirmed_flush_lsn::text from pg_replication_slots"
                " where slot_name = %s",
                (watermark, SLOT),
            ).fetchone()
            if row is not None and row[0]:
                return watermark
            if time.monotonic() > deadline:
                seen = "no slot" if row is None else f"slot at {row[1]}"
                raise StackError(f"Debezium did not capture up to {watermark} within {timeout:.0f} s ({seen})")
            time.sleep(0.5)
