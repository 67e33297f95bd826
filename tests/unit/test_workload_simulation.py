"""The workload simulation without services: determinism, business invariants, event layout, CLI errors.

Truth here is an independent replay of the row operations into plain dicts (what a database would hold),
checked against the business rules, not against the simulation's own bookkeeping.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from pipelines.workload.cli import add_workload_commands
from pipelines.workload.model import EVENT_TYPES, Delete, Insert, Row, Tally, Transaction, Update, WorkloadError
from pipelines.workload.simulation import WorkloadConfig, simulate
from pipelines.workload.writer import DirectoryEventSink, HourlyEventBuffer, event_object_path

CONFIG = WorkloadConfig(seed=7, customers=60, days=3, rate=6.0)
SERVICES = {
    "customer-service",
    "catalog-service",
    "inventory-service",
    "order-service",
    "payment-service",
    "shipping-service",
}


@pytest.fixture(scope="module")
def transactions() -> list[Transaction]:
    return list(simulate(CONFIG))


def replay(transactions: list[Transaction], after_each=None) -> dict[str, dict]:
    """Apply the operations to per-table dicts of column values, enforcing what Postgres would enforce."""
    tables: dict[str, dict] = {}
    for tx in transactions:
        for op in tx.operations:
            rows = tables.setdefault(op.table, {})
            if isinstance(op, Insert):
                assert op.row.key not in rows, f"{op.table} key {op.row.key} inserted twice"
                rows[op.row.key] = op.row.columns()
            elif isinstance(op, Update):
                current = rows[op.key]
                assert current["version"] == op.expected_version
                rows[op.key] = current | dict(op.changes)
            else:
                assert isinstance(op, Delete)
                del rows[op.row.key]
        if after_each:
            after_each(tx, tables)
    return tables


def _count(transactions: list[Transaction], event_type: str) -> int:
    return sum(1 for tx in transactions for e in tx.events if e.event_type == event_type)


# -- determinism -------------------------------------------------------------------------------------------


def test_same_seed_yields_identical_transaction_sequence(transactions):
    assert list(simulate(CONFIG)) == transactions


def test_different_seed_yields_different_keys_and_events(transactions):
    other = list(simulate(replace(CONFIG, seed=8)))
    assert other != transactions
    keys = {op.row.key for tx in transactions for op in tx.operations if isinstance(op, Insert)}
    other_keys = {op.row.key for tx in other for op in tx.operations if isinstance(op, Insert)}
    assert not keys & other_keys
    event_ids = {e.event_id for tx in transactions for e in tx.events}
    assert not event_ids & {e.event_id for tx in other for e in tx.events}


def test_simulation_does_not_touch_global_random_state():
    import random

    random.seed(123)
    expected = random.random()
    random.seed(123)
    list(simulate(replace(CONFIG, days=1)))
    assert random.random() == expected


# -- keys, versions, audit ---------------------------------------------------------------------------------


def test_keys_are_unique_across_tables_and_never_reused_after_delete(transactions):
    inserted = [op.row.key for tx in transactions for op in tx.operations if isinstance(op, Insert)]
    assert len(inserted) == len(set(inserted))
    deleted = [op.row.key for tx in transactions for op in tx.operations if isinstance(op, Delete)]
    assert deleted and set(deleted) <= set(inserted)
    replay(transactions)  # asserts no key is inserted twice, updates hit live rows at the expected version


def test_every_update_bumps_version_by_one_and_names_the_service(transactions):
    for tx in transactions:
        for op in tx.operations:
            if isinstance(op, Update):
                changes = dict(op.changes)
                assert changes["version"] == op.expected_version + 1
                assert changes["updated_at"] == tx.at  # only changed columns are written
                assert op.after.updated_at == tx.at and op.after.updated_by in SERVICES
            elif isinstance(op, Insert):
                row = op.row.columns()
                assert row["created_at"] == row["updated_at"] == tx.at
                assert row["created_by"] == row["updated_by"] in SERVICES
                assert row["version"] == 1 and row["deleted_at"] is None


def test_customers_are_soft_deleted_and_abandoned_orders_hard_deleted(transactions):
    soft = [
        dict(op.changes)
        for tx in transactions
        for op in tx.operations
        if isinstance(op, Update) and op.table == "customers" and "deleted_at" in dict(op.changes)
    ]
    assert soft and all(c["deleted_by"] == "customer-service" for c in soft)

    for tx in transactions:
        ops = [op for op in tx.operations if isinstance(op, Delete)]
        for op in ops:
            if op.table == "orders":
                assert op.row.status == "PENDING"
                assert op.row.order_ts <= tx.at - timedelta(days=1)
                assert not any(isinstance(o, Delete) and o.table == "payments" for o in tx.operations)
            elif op.table == "inventory":
                assert op.row.quantity_reserved == 0
            else:
                assert op.table == "order_items"
    assert any(op.table == "orders" for tx in transactions for op in tx.operations if isinstance(op, Delete))


def test_foreign_keys_hold_after_every_transaction(transactions):
    references = {
        "orders": [("customer_id", "customers")],
        "order_items": [("order_id", "orders"), ("product_id", "products")],
        "payments": [("order_id", "orders")],
        "shipments": [("order_id", "orders")],
        "inventory": [("product_id", "products")],
    }

    def check(tx, tables):
        for table, refs in references.items():
            for row in tables.get(table, {}).values():
                for column, target in refs:
                    assert row[column] in tables.get(target, {}), f"{tx.step}: {table}.{column} dangling"

    replay(transactions, after_each=check)


def test_emails_and_skus_stay_unique(transactions):
    tables = replay(transactions)
    emails = [c["email"] for c in tables["customers"].values()]
    skus = [p["sku"] for p in tables["products"].values()]
    assert len(emails) == len(set(emails)) and len(skus) == len(set(skus))


# -- money and state machines ------------------------------------------------------------------------------


def test_order_totals_add_up_and_subtotal_is_sum_of_item_line_totals(transactions):
    tables = replay(transactions)
    items_by_order: dict = {}
    for item in tables["order_items"].values():
        items_by_order.setdefault(item["order_id"], []).append(item)
        assert item["line_total"] == item["quantity"] * item["unit_price"] - item["discount_amount"]
        assert item["line_total"] > 0
    assert tables["orders"]
    for order_id, order in tables["orders"].items():
        assert order["subtotal"] == sum(i["line_total"] for i in items_by_order[order_id])
        assert order["total_amount"] == (
            order["subtotal"] - order["discount_amount"] + order["tax_amount"] + order["shipping_amount"]
        )
        for column in ("subtotal", "discount_amount", "tax_amount", "shipping_amount", "total_amount"):
            assert isinstance(order[column], Decimal) and order[column] == order[column].quantize(Decimal("0.01"))
        assert order["currency"] == "USD"


ORDER_TRANSITIONS = {
    ("PENDING", "CONFIRMED"),
    ("PENDING", "CANCELLED"),
    ("CONFIRMED", "SHIPPED"),
    ("CONFIRMED", "CANCELLED"),
    ("SHIPPED", "DELIVERED"),
}
PAYMENT_TRANSITIONS = {("AUTHORIZED", "CAPTURED"), ("AUTHORIZED", "REFUNDED")}
SHIPMENT_TRANSITIONS = {("DISPATCHED", "IN_TRANSIT"), ("IN_TRANSIT", "DELIVERED")}


def test_status_transitions_are_valid(transactions):
    allowed = {"orders": ORDER_TRANSITIONS, "payments": PAYMENT_TRANSITIONS, "shipments": SHIPMENT_TRANSITIONS}
    first = {"orders": {"PENDING"}, "payments": {"AUTHORIZED", "FAILED"}, "shipments": {"DISPATCHED"}}
    status: dict = {}
    seen = Counter()
    for tx in transactions:
        for op in tx.operations:
            if op.table not in allowed:
                continue
            if isinstance(op, Insert):
                assert op.row.status in first[op.table]
                status[op.row.key] = op.row.status
            elif isinstance(op, Update) and "status" in dict(op.changes):
                new = dict(op.changes)["status"]
                assert (status[op.key], new) in allowed[op.table], f"{op.table}: {status[op.key]} -> {new}"
                seen[(op.table, status[op.key], new)] += 1
                status[op.key] = new
    # every path of the order life cycle happens
    assert {(s, t) for table, s, t in seen if table == "orders"} == ORDER_TRANSITIONS
    assert any(s == "FAILED" for s in status.values())


def test_order_steps_are_single_transactions_with_their_side_effects(transactions):
    for tx in transactions:
        tables = Counter((op.table, type(op).__name__) for op in tx.operations)
        if tx.step == "order.create":
            assert tables[("orders", "Insert")] == 1 and tables[("order_items", "Insert")] >= 1
        if tx.step == "order.ship":
            assert tables[("shipments", "Insert")] == 1 and tables[("orders", "Update")] == 1
            assert tables[("payments", "Update")] == 1


def test_inventory_never_goes_negative(transactions):
    tables = replay(transactions)
    for row in tables["inventory"].values():
        assert row["quantity_on_hand"] >= row["quantity_reserved"] >= 0


# -- clock and events --------------------------------------------------------------------------------------


def test_transactions_follow_the_simulated_clock(transactions):
    times = [tx.at for tx in transactions]
    assert times == sorted(times)
    assert CONFIG.start <= times[0] and times[-1] < CONFIG.end
    assert times[-1] - times[0] > timedelta(days=CONFIG.days - 1)


def test_event_times_fall_within_the_simulated_days(transactions):
    for tx in transactions:
        for event in tx.events:
            assert CONFIG.start <= event.timestamp < CONFIG.end
            assert event.timestamp >= tx.at  # the writer relies on this to flush finished hours
            assert event.timestamp.microsecond % 1000 == 0


def test_funnel_views_exceed_cart_adds_exceed_orders(transactions):
    views = _count(transactions, "product.viewed")
    adds = _count(transactions, "cart.item_added")
    orders = _count(transactions, "order.created")
    assert views > adds > orders > 0
    expected_orders = CONFIG.rate * 24 * CONFIG.days
    assert 0.5 * expected_orders < orders < 1.5 * expected_orders


def test_order_events_match_order_rows(transactions):
    inserted_orders = sum(1 for tx in transactions for op in tx.operations if isinstance(op, Insert) and op.table == "orders")
    assert _count(transactions, "order.created") == inserted_orders
    registered = sum(1 for tx in transactions for op in tx.operations if isinstance(op, Insert) and op.table == "customers")
    assert _count(transactions, "user.registered") == registered == CONFIG.customers


TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def test_events_serialize_to_the_platform_event_schema(transactions):
    for tx in transactions[:400]:
        for event in tx.events:
            doc = json.loads(json.dumps(event.to_json()))
            assert set(doc) == {
                "eventId", "eventType", "eventSource", "timestamp", "version", "data", "correlationId",
                "userId", "sessionId", "environment", "region",
            }  # fmt: skip
            assert doc["eventType"] in EVENT_TYPES and doc["version"] == "1.0"
            assert TIMESTAMP.match(doc["timestamp"])
            assert datetime.fromisoformat(doc["timestamp"]) == event.timestamp
            assert set(doc["data"]) == {"payload", "metadata"}
            assert doc["environment"] == "local" and doc["region"] == "us-east-1"
            if doc["eventType"].startswith(("order.", "payment.", "shipment.", "user.")):
                assert doc["userId"] is not None


def test_events_land_in_hourly_objects_partitioned_by_event_time(transactions, tmp_path: Path):
    buffer = HourlyEventBuffer(DirectoryEventSink(tmp_path), CONFIG.run_id)
    tally = Tally()
    for tx in transactions:
        buffer.flush_before(tx.at)
        buffer.add(tx.events)
        tally.add(tx)
    buffer.flush_all()

    files = sorted(tmp_path.rglob("*.jsonl"))
    assert len(files) == buffer.objects_written == 24 * CONFIG.days
    types = Counter()
    for path in files:
        m = re.search(r"year=(\d{4})/month=(\d{2})/day=(\d{2})/events-\d{8}T(\d{2})-", path.as_posix())
        assert m, path
        for line in path.read_text().splitlines():
            doc = json.loads(line)
            ts = datetime.fromisoformat(doc["timestamp"])
            assert (f"{ts:%Y}", f"{ts:%m}", f"{ts:%d}", f"{ts:%H}") == m.groups()
            types[doc["eventType"]] += 1
    assert dict(types) == tally.summary(CONFIG.seed, CONFIG.start, CONFIG.end).events


def test_event_object_path_is_deterministic_and_named_for_the_run():
    hour = datetime(2026, 11, 3, 7, tzinfo=UTC)
    assert event_object_path(hour, "seed1-abc") == "year=2026/month=11/day=03/events-20261103T07-seed1-abc.jsonl"
    assert CONFIG.run_id == WorkloadConfig(seed=7, customers=60, days=3, rate=6.0).run_id
    assert CONFIG.run_id != replace(CONFIG, seed=8).run_id


# -- summary, config, CLI ----------------------------------------------------------------------------------


def test_summary_counts_match_the_replayed_tables(transactions):
    tally = Tally()
    for tx in transactions:
        tally.add(tx)
    summary = tally.summary(CONFIG.seed, CONFIG.start, CONFIG.end)
    tables = replay(transactions)
    for table, counts in summary.tables.items():
        assert counts.net_rows == len(tables.get(table, {}))
    soft_deleted = sum(1 for c in tables["customers"].values() if c["deleted_at"] is not None)
    assert summary.tables["customers"].soft_deletes == soft_deleted
    assert summary.total_events == sum(len(tx.events) for tx in transactions)
    assert "orders" in summary.format()


@pytest.mark.parametrize(
    "changes", [{"customers": 0}, {"days": 0}, {"rate": 0.0}, {"rate": float("nan")}, {"start": datetime(2026, 1, 1)}]
)
def test_config_rejects_impossible_runs(changes):
    with pytest.raises(WorkloadError):
        WorkloadConfig(**({"seed": 1, "customers": 5, "days": 1} | changes))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lakehouse")
    add_workload_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_parses_run_flags():
    args = _parser().parse_args(
        ["workload", "run", "--seed", "3", "--customers", "20", "--days", "2", "--rate", "7.5", "--start", "2026-12-24"]
    )
    assert (args.seed, args.customers, args.days, args.rate) == (3, 20, 2, 7.5)
    assert args.start == datetime(2026, 12, 24, tzinfo=UTC) and args.events_dir is None


def test_cli_reports_unreachable_postgres_in_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("LAKEHOUSE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LAKEHOUSE_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:1/shop")
    args = _parser().parse_args(
        ["workload", "run", "--seed", "1", "--customers", "2", "--days", "1", "--events-dir", str(tmp_path / "ev")]
    )
    with pytest.raises(SystemExit) as exit_info:
        args.func(args)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("workload: cannot connect to Postgres") and err.count("\n") == 1
    assert "Traceback" not in err


def test_rows_are_typed_dataclasses_with_audit_columns_last(transactions):
    row = next(op.row for tx in transactions for op in tx.operations if isinstance(op, Insert) and op.table == "orders")
    assert isinstance(row, Row)
    columns = list(row.columns())
    assert columns[:11] == [
        "order_id", "customer_id", "status", "order_ts", "subtotal", "discount_amount", "tax_amount",
        "shipping_amount", "total_amount", "currency", "shipping_address",
    ]  # fmt: skip
    assert columns[11:] == ["created_at", "created_by", "updated_at", "updated_by", "version", "deleted_at", "deleted_by"]
