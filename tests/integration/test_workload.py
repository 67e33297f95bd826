"""The workload against the local stack's Postgres and S3.

Each test module run uses its own fresh databases (CREATE DATABASE in the stack's cluster) and its own S3
prefix, so the stack's `shop` database and `raw/events` (which the CDC and event tests read) stay untouched.
Truth: an independent replay of the simulated operations into dicts, and the S3 object keys themselves.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from pipelines.workload.model import ROW_TYPES, TABLES, Delete, Insert, Update, WorkloadError
from pipelines.workload.oracle import daily_sales, table_contents_digest
from pipelines.workload.simulation import WorkloadConfig, simulate
from pipelines.workload.writer import S3EventSink, apply_schema, run_workload

pytestmark = pytest.mark.stack

SEED, CUSTOMERS, DAYS, RATE = 11, 40, 2, 5.0
START = datetime(2026, 11, 1, tzinfo=UTC)


class FreshDatabases:
    """Creates empty databases with the OLTP schema in the stack's cluster; drops them afterwards."""

    def __init__(self, settings):
        self.settings = settings
        self.created: list[str] = []

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(make_conninfo(self.settings.postgres_dsn, dbname="postgres"), autocommit=True)

    def create(self) -> str:
        name = f"workload_test_{uuid.uuid4().hex[:8]}"
        with self.admin() as conn:
            conn.execute(f'create database "{name}"')
        self.created.append(name)
        dsn = make_conninfo(self.settings.postgres_dsn, dbname=name)
        with psycopg.connect(dsn, autocommit=True) as conn:
            apply_schema(conn)
        return dsn

    def drop_all(self) -> None:
        with self.admin() as conn:
            for name in self.created:
                conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture(scope="module")
def databases(stack):
    dbs = FreshDatabases(stack)
    yield dbs
    dbs.drop_all()


def _isolated(settings):
    """The stack's settings with a private events prefix."""
    return replace(settings, events_prefix=f"tests/workload/{uuid.uuid4().hex[:8]}")


def _run(settings, dsn, seed=SEED):
    return run_workload(settings, seed=seed, customers=CUSTOMERS, days=DAYS, rate=RATE, start=START, dsn=dsn)


@pytest.fixture(scope="module")
def first_run(stack, databases):
    settings, dsn = _isolated(stack), databases.create()
    return settings, dsn, _run(settings, dsn)


def replay(seed: int) -> dict[str, dict]:
    """The rows the simulated operations leave behind, applied to plain dicts."""
    tables: dict[str, dict] = {t: {} for t in TABLES}
    for tx in simulate(WorkloadConfig(seed=seed, customers=CUSTOMERS, days=DAYS, rate=RATE, start=START)):
        for op in tx.operations:
            if isinstance(op, Insert):
                tables[op.table][op.row.key] = op.row.columns()
            elif isinstance(op, Update):
                tables[op.table][op.key] |= dict(op.changes)
            else:
                assert isinstance(op, Delete)
                del tables[op.table][op.row.key]
    return tables


def _rows(dsn: str, table: str) -> dict:
    key = ROW_TYPES[table].key_column
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        return {row[key]: row for row in conn.execute(f'select * from public."{table}"').fetchall()}


def _s3_objects(settings) -> dict[str, bytes]:
    sink = S3EventSink(settings)
    objects = {}
    for page in sink.client.get_paginator("list_objects_v2").paginate(
        Bucket=settings.s3_bucket, Prefix=settings.events_prefix + "/"
    ):
        for item in page.get("Contents", []):
            body = sink.client.get_object(Bucket=settings.s3_bucket, Key=item["Key"])["Body"].read()
            objects[item["Key"][len(settings.events_prefix) + 1 :]] = body
    return objects


# -- rows --------------------------------------------------------------------------------------------------


def test_row_counts_in_postgres_equal_the_summary(first_run):
    _, dsn, summary = first_run
    with psycopg.connect(dsn) as conn:
        for table in TABLES:
            (count,) = conn.execute(f'select count(*) from public."{table}"').fetchone()
            assert count == summary.tables[table].net_rows, table
        (soft,) = conn.execute("select count(*) from public.customers where deleted_at is not null").fetchone()
    assert soft == summary.tables["customers"].soft_deletes > 0
    assert summary.tables["orders"].deletes > 0 and summary.tables["orders"].updates > 0


def test_postgres_holds_exactly_the_replayed_rows_column_by_column(first_run):
    _, dsn, _ = first_run
    expected = replay(SEED)
    for table in TABLES:
        actual = _rows(dsn, table)
        assert actual.keys() == expected[table].keys(), table
        for key, row in expected[table].items():
            assert actual[key] == row, f"{table} {key}"


def test_order_totals_add_up_in_postgres(first_run):
    _, dsn, _ = first_run
    with psycopg.connect(dsn) as conn:
        (bad,) = conn.execute(
            """
            select count(*) from public.orders o
            where o.total_amount <> o.subtotal - o.discount_amount + o.tax_amount + o.shipping_amount
               or o.subtotal <> (select sum(i.line_total) from public.order_items i where i.order_id = o.order_id)
            """
        ).fetchone()
    assert bad == 0


def test_same_seed_on_a_fresh_database_gives_identical_contents_and_events(stack, databases, first_run):
    settings, dsn, summary = first_run
    other_settings, other_dsn = _isolated(stack), databases.create()
    other = _run(other_settings, other_dsn)
    assert other == summary
    with psycopg.connect(dsn) as a, psycopg.connect(other_dsn) as b:
        assert table_contents_digest(a) == table_contents_digest(b)
    assert _s3_objects(settings) == _s3_objects(other_settings)


def test_a_different_seed_adds_to_the_same_database_and_a_repeated_seed_is_refused(stack, databases):
    settings, dsn = _isolated(stack), databases.create()
    first = _run(settings, dsn, seed=21)
    second = _run(settings, dsn, seed=22)
    assert second != first
    with psycopg.connect(dsn) as conn:
        before = {t: conn.execute(f'select count(*) from public."{t}"').fetchone()[0] for t in TABLES}
    for table in TABLES:
        assert before[table] == first.tables[table].net_rows + second.tables[table].net_rows

    repeat_settings = _isolated(stack)
    with pytest.raises(WorkloadError, match="seed 21"):
        _run(repeat_settings, dsn, seed=21)
    with psycopg.connect(dsn) as conn:
        after = {t: conn.execute(f'select count(*) from public."{t}"').fetchone()[0] for t in TABLES}
    assert after == before
    assert _s3_objects(repeat_settings) == {}


# -- events ------------------------------------------------------------------------------------------------

_PATH = re.compile(r"^year=(\d{4})/month=(\d{2})/day=(\d{2})/events-(\d{8})T(\d{2})-seed\d+-[0-9a-f]{8}\.jsonl$")


def test_events_in_s3_parse_match_the_summary_and_sit_in_their_event_hour(first_run):
    settings, _, summary = first_run
    objects = _s3_objects(settings)
    assert len(objects) == summary.event_objects == 24 * DAYS
    counts: dict[str, int] = defaultdict(int)
    ids = set()
    for path, body in objects.items():
        m = _PATH.match(path)
        assert m, path
        year, month, day, ymd, hour = m.groups()
        for line in body.decode().splitlines():
            event = json.loads(line)
            ts = datetime.strptime(event["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
            assert (f"{ts:%Y}", f"{ts:%m}", f"{ts:%d}", f"{ts:%Y%m%d}", f"{ts:%H}") == (year, month, day, ymd, hour)
            counts[event["eventType"]] += 1
            ids.add(event["eventId"])
    assert dict(counts) == summary.events
    assert len(ids) == summary.total_events


def test_order_created_events_carry_the_order_rows(first_run):
    settings, dsn, _ = first_run
    orders = _rows(dsn, "orders")
    created = [
        json.loads(line)
        for body in _s3_objects(settings).values()
        for line in body.decode().splitlines()
        if '"order.created"' in line
    ]
    assert created
    still_there = [e for e in created if uuid.UUID(e["data"]["payload"]["order_id"]) in orders]
    assert still_there  # abandoned orders are deleted later; the rest are in Postgres
    for event in still_there:
        payload = event["data"]["payload"]
        order = orders[uuid.UUID(payload["order_id"])]
        assert Decimal(payload["total_amount"]) == order["total_amount"]
        assert uuid.UUID(event["userId"]) == order["customer_id"]


# -- oracle ------------------------------------------------------------------------------------------------


def test_daily_sales_oracle_agrees_with_the_replayed_orders(first_run):
    _, dsn, _ = first_run
    days: dict = defaultdict(list)
    for order in replay(SEED)["orders"].values():
        if order["status"] in ("CONFIRMED", "SHIPPED", "DELIVERED") and order["deleted_at"] is None:
            days[order["order_ts"].astimezone(UTC).date()].append(order)
    expected = [
        (
            day,
            len(orders),
            sum(o["total_amount"] for o in orders),
            (sum(o["total_amount"] for o in orders) / len(orders)).quantize(Decimal("0.01"), ROUND_HALF_UP),
            len({o["customer_id"] for o in orders}),
        )
        for day, orders in sorted(days.items())
    ]
    with psycopg.connect(dsn) as conn:
        assert daily_sales(conn) == expected
    assert len(expected) == DAYS


# -- CLI ---------------------------------------------------------------------------------------------------


def test_cli_run_prints_the_summary(stack, databases, monkeypatch, capsys, tmp_path):
    import argparse

    from pipelines.workload.cli import add_workload_commands

    monkeypatch.setenv("LAKEHOUSE_POSTGRES_DSN", databases.create())
    parser = argparse.ArgumentParser(prog="lakehouse")
    add_workload_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        ["workload", "run", "--seed", "5", "--customers", "5", "--days", "1", "--events-dir", str(tmp_path)]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("workload seed 5:") and "order_items" in out
    assert 0 < len(list(tmp_path.rglob("*.jsonl"))) <= 24  # one object per simulated hour that had events
