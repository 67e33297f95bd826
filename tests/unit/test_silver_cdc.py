"""Silver CDC semantics on the real dbt project: small bronze Delta tables in a temp lake, `dbt build`, then
the silver and gold tables compared with facts written down here (SCD2 versions, deletes, truncates, TOAST)
and with a second build from the same changes arriving out of order and partly redelivered."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from pipelines.cdc.bronze_schema import BRONZE_CDC
from pipelines.events.bronze_schema import BRONZE_EVENTS, PARTITION_BY

PROJECT = Path(__file__).resolve().parents[2]
DBT = str(Path(sys.executable).parent / "dbt")
T0 = datetime(2026, 11, 1, tzinfo=UTC)
TABLES = ("customers", "products", "inventory", "orders", "order_items", "payments", "shipments")
# columns that say when or from which bronze copy a table was built, not what it holds
RUN_COLUMNS = {"processed_at", "source_bronze_id", "source_ingested_at"}


def at(lsn: int) -> datetime:
    """Commit time of the change at `lsn` in this made-up source: one second per LSN unit."""
    return T0 + timedelta(seconds=lsn)


def iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def audit(lsn: int, version: int = 1) -> dict:
    return {"created_at": iso(at(lsn)), "created_by": "test", "updated_at": iso(at(lsn)), "updated_by": "test",
            "version": version, "deleted_at": None, "deleted_by": None}


@dataclass(frozen=True)
class Change:
    table: str
    op: str  # c u d t
    lsn: int
    row: dict | None = None  # after (c, u) or before (d)
    unavailable: tuple[str, ...] = ()


def uid(n: int) -> str:
    return f"00000000-0000-0000-0000-{n:012d}"


C1, C2, P1, I1, I2, O1, O2, OI1, OI2, PAY1, S1 = (uid(n) for n in range(1, 12))
customer = {"customer_id": C1, "first_name": "Ada", "last_name": "Lovelace", "phone": None, "country": "GB",
            "city": "London", "marketing_opt_in": False, "registered_at": iso(at(100))}
product = {"product_id": P1, "sku": "SKU-1", "name": "Lamp", "category": "Home", "brand": "Hearthly",
           "is_active": True}
order = {"order_id": O1, "customer_id": C1, "order_ts": iso(at(150)), "subtotal": "20.00", "discount_amount": "0.00",
         "tax_amount": "4.00", "shipping_amount": "5.99", "total_amount": "29.99", "currency": "GBP",
         "shipping_address": '{"city": "London"}'}
order2 = order | {"order_id": O2, "order_ts": iso(at(160))}
item = {"order_item_id": OI1, "order_id": O1, "product_id": P1, "quantity": 2, "unit_price": "10.00",
        "discount_amount": "0.00", "line_total": "20.00"}
stock = {"product_id": P1, "warehouse_code": "WH-EU", "quantity_on_hand": 5, "quantity_reserved": 0, "reorder_point": 2}

# The source's history, in commit (LSN) order.
CHANGES = [
    Change("customers", "c", 100, customer | {"email": "a@example.com"} | audit(100)),
    Change("products", "c", 105, product | {"price": "10.00", "cost": "4.00", "attributes": '{"color": "red"}'} | audit(105)),
    # a Postgres char(2) value arrives blank-padded
    Change("customers", "c", 110, customer | {"customer_id": C2, "email": "z@example.com", "country": "Z "} | audit(110)),
    Change("inventory", "c", 130, stock | {"inventory_id": I1} | audit(130)),
    Change("orders", "c", 150, order | {"status": "PENDING"} | audit(150)),
    Change("order_items", "c", 151, item | audit(151)),
    Change("orders", "c", 160, order2 | {"status": "PENDING"} | audit(160)),
    Change("order_items", "c", 161, item | {"order_item_id": OI2, "order_id": O2} | audit(161)),
    Change("customers", "u", 200, customer | {"email": "b@example.com"} | audit(200, 2)),
    # an update that leaves the TOASTed attributes alone: Debezium does not resend them
    Change("products", "u", 205, product | {"price": "12.50", "cost": "4.00"} | audit(205, 2), ("attributes",)),
    Change("inventory", "t", 230),
    Change("inventory", "c", 240, stock | {"inventory_id": I2} | audit(240)),
    Change("payments", "c", 249, {"payment_id": PAY1, "order_id": O1, "method": "card", "status": "AUTHORIZED",
                                  "amount": "29.99", "currency": "GBP", "provider_ref": "psp_1",
                                  "processed_at": iso(at(249))} | audit(249)),
    Change("orders", "u", 250, order | {"status": "CONFIRMED"} | audit(250, 2)),
    Change("order_items", "d", 259, item | {"order_item_id": OI2, "order_id": O2} | audit(161)),
    Change("orders", "d", 260, order2 | {"status": "PENDING"} | audit(160)),
    Change("shipments", "c", 270, {"shipment_id": S1, "order_id": O1, "carrier": "DHL", "tracking_number": "DH1",
                                   "status": "DISPATCHED", "shipped_at": iso(at(270)), "delivered_at": None} | audit(270)),
    Change("customers", "u", 300, customer | {"email": "c@example.com"} | audit(300, 3)),
    Change("products", "u", 305, product | {"price": "13.00", "cost": "4.00"} | audit(305, 3), ("attributes",)),
]


def bronze_rows(changes: list[Change], table: str, arrival: list[int]) -> list[dict]:
    """The bronze rows of one topic, with Kafka offsets in `arrival` order (indexes into the topic's changes)."""
    mine = [c for c in changes if c.table == table]
    rows = []
    for offset, index in enumerate(arrival):
        change = mine[index]
        after = None if change.op in ("d", "t") else {k: v for k, v in change.row.items() if k not in change.unavailable}
        before = change.row if change.op == "d" else None
        topic = f"shop.public.{table}"
        rows.append({
            "bronze_id": f"{topic}/0/{offset}", "topic": topic, "partition": 0, "offset": offset,
            "kafka_ts": at(change.lsn), "kind": "change", "op": change.op, "source_connector": "postgresql",
            "source_database": "shop", "source_schema": "public",
            "source_table": table, "record_key": None,
            "before": None if before is None else json.dumps(before), "after": None if after is None else json.dumps(after),
            "unavailable_columns": list(change.unavailable), "lsn": str(change.lsn), "tx_id": f"{change.lsn}:{change.lsn}",
            "source_ts": at(change.lsn), "transaction": None, "raw_payload": None, "value_schema_id": None,
            "ingested_at": at(1000), "ingest_batch_id": "test", "ingest_date": date(2026, 11, 1),
        })
        if change.op == "d":  # Debezium follows a delete with a tombstone for log compaction
            rows.append(rows[-1] | {"kind": "tombstone", "op": None, "before": None, "offset": offset + 10_000,
                                    "bronze_id": f"{topic}/0/{offset + 10_000}"})
    return rows


def event(n: int, event_type: str, session: str | None, minute: int, key: str) -> dict:
    return {"bronze_id": f"{key}@e:{n}", "row_kind": "event", "event_id": uid(900 + n), "event_type": event_type,
            "event_ts": T0 + timedelta(minutes=minute), "session_id": session, "payload": "{}", "metadata": "{}",
            "envelope": "platform", "object_key": key, "etag": "e", "object_day": date(2026, 11, 1),
            "ingested_at": at(1000), "ingest_batch_id": "test"}


EVENTS = [
    event(1, "product.viewed", uid(801), 1, "k1"),
    event(2, "cart.item_added", uid(801), 2, "k1"),
    event(3, "order.created", uid(801), 3, "k1"),
    event(4, "product.viewed", uid(802), 4, "k1"),
    event(1, "product.viewed", uid(801), 1, "k2"),  # the same eventId again, in another object
]


def write_lake(root: Path, arrivals: dict[str, list[int]], batches: int = 1) -> list[dict[str, list[dict]]]:
    """Writes the first of `batches` ingestion batches (each topic's records cut into consecutive parts,
    the n-th ingested at 1000 + 1000 n seconds) and the events; returns the later batches."""
    parts: list[dict[str, list[dict]]] = [{} for _ in range(batches)]
    for table in TABLES:
        rows = bronze_rows(CHANGES, table, arrivals[table])
        size = -(-len(rows) // batches)
        for n in range(batches):
            parts[n][table] = [r | {"ingested_at": at(1000 * (n + 1))} for r in rows[n * size:(n + 1) * size]]
    write_batch(root, parts[0], mode="overwrite")
    write_deltalake(str(root / "lake" / "bronze" / "events"), pa.Table.from_pylist(EVENTS, schema=BRONZE_EVENTS),
                    partition_by=PARTITION_BY)
    return parts[1:]


def write_batch(root: Path, batch: dict[str, list[dict]], mode: str = "append") -> None:
    for table, rows in batch.items():
        write_deltalake(str(root / "lake" / "bronze" / f"cdc_{table}"), pa.Table.from_pylist(rows, schema=BRONZE_CDC),
                        mode=mode)


def dbt(root: Path, *args: str) -> None:
    # business days are UTC days whatever the host's zone: New York puts these early-UTC changes on the day before
    env = {**os.environ, "LAKEHOUSE_DATA_DIR": str(root), "PYTHONPATH": str(PROJECT), "TZ": "America/New_York"}
    env.pop("LAKEHOUSE_CONFIG", None)
    done = subprocess.run(
        [DBT, *args, "--project-dir", str(PROJECT / "dbt_project"), "--profiles-dir", str(PROJECT / "dbt_project"),
         "--target-path", str(root / "target"), "--log-path", str(root / "logs")],
        cwd=PROJECT / "dbt_project", env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]


def read(root: Path, layer: str, table: str) -> list[dict]:
    return DeltaTable(str(root / "lake" / layer / table)).to_pyarrow_table().to_pylist()


def rows_content(rows: list[dict]) -> list[tuple]:
    """What rows hold, comparable across builds: without the run columns, in a stable order."""
    return sorted(tuple(sorted((k, json.dumps(v, default=str)) for k, v in r.items() if k not in RUN_COLUMNS))
                  for r in rows)


def content(root: Path, layer: str, table: str) -> list[tuple]:
    return rows_content(read(root, layer, table))


def in_order(table: str) -> list[int]:
    return list(range(sum(c.table == table for c in CHANGES)))


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clean")
    write_lake(root, {t: in_order(t) for t in TABLES})
    dbt(root, "build")  # models, data tests and unit tests
    return root


def perturbed_arrivals() -> dict[str, list[int]]:
    """Each topic's changes shuffled, with a third of them redelivered at later offsets."""
    shuffle = random.Random(6)
    arrivals = {}
    for table in TABLES:
        order_ = in_order(table)
        shuffle.shuffle(order_)
        arrivals[table] = order_ + shuffle.sample(order_, max(1, len(order_) // 3))
    assert any(arrivals[t][: len(in_order(t))] != in_order(t) for t in TABLES)
    return arrivals


@pytest.fixture(scope="module")
def perturbed(tmp_path_factory) -> Path:
    """The same changes, arriving out of order and partly twice, built at once."""
    root = tmp_path_factory.mktemp("perturbed")
    write_lake(root, perturbed_arrivals())
    dbt(root, "run")
    return root


@pytest.fixture(scope="module")
def perturbed_in_three_runs(tmp_path_factory) -> Path:
    """The same perturbed stream ingested in three batches, with an (incremental) dbt run after each."""
    root = tmp_path_factory.mktemp("perturbed_in_three_runs")
    later = write_lake(root, perturbed_arrivals(), batches=3)
    dbt(root, "run")
    for batch in later:
        write_batch(root, batch)
        dbt(root, "run")
    # the later runs were incremental: history merged into the table the first run wrote, current state
    # replaced only some of its partitions
    silver = root / "lake" / "silver"
    assert DeltaTable(str(silver / "int_orders_history")).history(1)[0]["operation"] == "MERGE"
    assert "predicate" in DeltaTable(str(silver / "int_orders_current")).history(1)[0]["operationParameters"]
    return root


def by(rows: list[dict], key: str) -> dict:
    return {r[key]: r for r in rows}


def test_customer_whose_email_changed_twice_has_three_contiguous_versions(clean):
    versions = sorted((r for r in read(clean, "silver", "int_customers_history") if r["customer_id"] == C1),
                      key=lambda r: r["valid_from"])
    assert [(r["email"], r["valid_from"], r["valid_to"], r["is_current"]) for r in versions] == [
        ("a@example.com", at(100), at(200), False),
        ("b@example.com", at(200), at(300), False),
        ("c@example.com", at(300), None, True),
    ]
    dim = sorted((r for r in read(clean, "gold", "dim_customers") if r["customer_id"] == C1), key=lambda r: r["valid_from"])
    assert [(r["email"], r["valid_from"], r["valid_to"]) for r in dim] == [
        (r["email"], r["valid_from"], r["valid_to"]) for r in versions
    ]


def test_deleted_order_is_gone_from_current_state_and_closed_in_history(clean):
    assert {r["order_id"]: r["status"] for r in read(clean, "silver", "int_orders_current")} == {O1: "CONFIRMED"}
    o2 = [r for r in read(clean, "silver", "int_orders_history") if r["order_id"] == O2]
    assert [(r["valid_from"], r["valid_to"], r["is_current"]) for r in o2] == [(at(160), at(260), False)]
    facts = [r for r in read(clean, "gold", "fct_orders") if r["order_id"] == O2]
    assert [(r["valid_to"], r["is_current"]) for r in facts] == [(at(260), False)]
    assert [r["order_item_id"] for r in read(clean, "gold", "fct_order_items")] == [OI1]


def test_truncate_removes_rows_committed_before_it(clean):
    assert [r["inventory_id"] for r in read(clean, "silver", "int_inventory_current")] == [I2]
    history = by(read(clean, "silver", "int_inventory_history"), "inventory_id")
    assert (history[I1]["valid_to"], history[I1]["is_current"]) == (at(230), False)
    assert (history[I2]["valid_to"], history[I2]["is_current"]) == (None, True)


def test_char_columns_lose_their_blank_padding_as_in_postgres(clean):
    countries = {r["customer_id"]: r["country"] for r in read(clean, "silver", "int_customers_current")}
    assert countries == {C1: "GB", C2: "Z"}
    assert {r["currency"] for r in read(clean, "silver", "stg_shop__orders")} == {"GBP"}


def test_toasted_column_keeps_the_value_it_had_before(clean):
    (current,) = read(clean, "silver", "int_products_current")
    assert json.loads(current["attributes"]) == {"color": "red"}
    assert current["price"] == Decimal("13.00")
    history = sorted(read(clean, "silver", "int_products_history"), key=lambda r: r["valid_from"])
    assert [json.loads(r["attributes"]) for r in history] == [{"color": "red"}] * 3


def test_silver_rows_carry_quality_and_lineage_columns(clean):
    (o1,) = read(clean, "silver", "int_orders_current")
    assert (o1["data_quality_score"], o1["quality_checks_passed"], o1["quality_issues"]) == (Decimal("1.0000"), True, [])
    assert o1["processing_version"] == "0.1.0" and o1["processed_at"] is not None
    assert o1["source_bronze_id"] == "shop.public.orders/0/2"  # the update at LSN 250, third on the topic


def test_versions_are_laid_out_by_the_utc_day_they_began(clean, perturbed_in_three_runs):
    """What keeps incremental runs O(change): every version sits in the partition of the day it began,
    after the full build and after incremental runs alike (a row in another partition would be missed by
    the runs that rebuild or MERGE only the days they touch)."""
    scd2 = [("silver", f"int_{t}_history", "valid_from") for t in TABLES] + [
        ("gold", "fct_orders", "valid_from"), ("gold", "dim_customers", "valid_from")]
    current = [("silver", f"int_{t}_current", "last_changed_at") for t in TABLES]
    for root in (clean, perturbed_in_three_runs):
        for layer, table, began in scd2 + current:
            day_column = "valid_from_date" if began == "valid_from" else "last_changed_date"
            assert DeltaTable(str(root / "lake" / layer / table)).metadata().partition_columns == [day_column], table
            rows = DeltaTable(str(root / "lake" / layer / table)).to_pyarrow_table().to_pylist()
            assert all(r[day_column] == r[began].astimezone(UTC).date() for r in rows), table


def test_business_days_and_hours_are_utc_on_a_host_in_another_zone(clean):
    (o1,) = [r for r in read(clean, "gold", "fct_orders") if r["is_current"]]
    assert (o1["order_ts"], o1["order_date"]) == (at(150), date(2026, 11, 1))
    assert [(r["order_date"], r["order_count"]) for r in read(clean, "gold", "agg_daily_sales")] == [(date(2026, 11, 1), 1)]
    assert [r["order_hour"] for r in read(clean, "gold", "agg_hourly_revenue")] == [datetime(2026, 11, 1, tzinfo=UTC)]
    assert [r["funnel_date"] for r in read(clean, "gold", "agg_daily_funnel")] == [date(2026, 11, 1)]


def test_customer_features_as_of_a_given_instant(clean, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(clean, root)
    # a second current order (of C2), so that current state holds more than one order
    o3 = Change("orders", "c", 400, order | {"order_id": uid(12), "customer_id": C2, "status": "CONFIRMED"} | audit(400))
    write_batch(root, {"orders": [r | {"offset": 100, "bronze_id": "shop.public.orders/0/100", "ingested_at": at(5000)}
                                  for r in bronze_rows([o3], "orders", [0])]})
    dbt(root, "run", "--select", "+customer_features", "--vars", '{"features_as_of": "2026-11-01T01:00:00Z"}')
    features = by(read(root, "gold", "customer_features"), "customer_id")
    assert len(read(root, "gold", "customer_features")) == len(features) == 2
    assert [(features[c]["lifetime_order_count"], features[c]["lifetime_value"]) for c in (C1, C2)] == [
        (1, Decimal("29.99")), (1, Decimal("29.99"))]
    assert features[C1]["order_count_last_30_days"] == 1


def test_a_key_removed_and_inserted_again_has_a_gap_in_its_history_that_the_build_accepts(tmp_path):
    reinserted = CHANGES + [
        # a warehouse reload: the table truncated, the same row loaded again
        Change("inventory", "t", 410),
        Change("inventory", "c", 420, stock | {"inventory_id": I2} | audit(420)),
        # an order deleted, then inserted again under its id
        Change("orders", "d", 430, order | {"status": "CONFIRMED"} | audit(250, 2)),
        Change("orders", "c", 440, order | {"status": "PENDING"} | audit(440)),
    ]
    write_batch(tmp_path, {t: bronze_rows(reinserted, t, list(range(sum(c.table == t for c in reinserted))))
                           for t in TABLES}, mode="overwrite")
    write_deltalake(str(tmp_path / "lake" / "bronze" / "events"), pa.Table.from_pylist(EVENTS, schema=BRONZE_EVENTS),
                    partition_by=PARTITION_BY)
    dbt(tmp_path, "build", "--select", "+int_inventory_history", "+int_orders_history")  # scd2_validity passes
    stock_versions = sorted((r["valid_from"], r["valid_to"]) for r in read(tmp_path, "silver", "int_inventory_history")
                            if r["inventory_id"] == I2)
    assert stock_versions == [(at(240), at(410)), (at(420), None)]
    order_versions = sorted((r["valid_from"], r["valid_to"]) for r in read(tmp_path, "silver", "int_orders_history")
                            if r["order_id"] == O1)
    assert order_versions == [(at(150), at(250)), (at(250), at(430)), (at(440), None)]


def test_events_committed_after_later_stamped_ones_were_staged_are_staged_too(clean, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(clean, root)
    events = root / "lake" / "bronze" / "events"
    # another day's run stamped its batch at 2000 s and committed it; the next dbt run staged it
    write_deltalake(str(events), pa.Table.from_pylist([event(5, "product.viewed", uid(803), 5, "k3")
                                                        | {"ingested_at": at(2000)}], schema=BRONZE_EVENTS), mode="append")
    dbt(root, "run", "--select", "stg_events__events+")
    # a slower run stamped its batch at 1500 s and commits it only now
    write_deltalake(str(events), pa.Table.from_pylist([event(6, "product.viewed", uid(804), 6, "k4")
                                                        | {"ingested_at": at(1500)}], schema=BRONZE_EVENTS), mode="append")
    dbt(root, "run", "--select", "stg_events__events+")
    staged = sorted(r["event_id"] for r in read(root, "silver", "stg_events__events"))
    assert staged == sorted({e["event_id"] for e in EVENTS} | {uid(905), uid(906)})
    (day,) = read(root, "gold", "agg_daily_funnel")
    assert (day["viewing_sessions"], day["product_views"]) == (4, 4)


def test_lines_of_an_order_deleted_before_them_follow_it_in_an_incremental_run(clean, tmp_path):
    incremental, full = tmp_path / "incremental", tmp_path / "full"
    shutil.copytree(clean, incremental)
    # the orders topic runs ahead: O1 is deleted; its line's delete has not arrived yet
    deleted = Change("orders", "d", 400, order | {"status": "CONFIRMED"} | audit(250, 2))
    write_batch(incremental, {"orders": [r | {"offset": r["offset"] + 100, "bronze_id": f"shop.public.orders/0/{r['offset'] + 100}",
                                              "ingested_at": at(5000)} for r in bronze_rows([deleted], "orders", [0])]})
    shutil.copytree(incremental / "lake" / "bronze", full / "lake" / "bronze")
    dbt(incremental, "run")
    dbt(full, "run")
    (line,) = read(incremental, "gold", "fct_order_items")
    assert (line["order_item_id"], line["order_status"], line["is_revenue"]) == (OI1, None, False)
    assert content(incremental, "gold", "fct_order_items") == content(full, "gold", "fct_order_items")


def test_events_are_deduplicated_by_event_id(clean):
    assert sorted(r["event_id"] for r in read(clean, "silver", "stg_events__events")) == sorted({e["event_id"] for e in EVENTS})
    (day,) = read(clean, "gold", "agg_daily_funnel")
    assert (day["viewing_sessions"], day["carting_sessions"], day["ordering_sessions"], day["product_views"]) == (2, 1, 1, 2)


@pytest.mark.parametrize("layer, table", [("silver", f"int_{t}_{kind}") for t in TABLES for kind in ("current", "history")]
                         + [("gold", t) for t in ("fct_orders", "fct_order_items", "dim_customers", "dim_products",
                                                  "agg_daily_sales", "agg_hourly_revenue", "customer_features")])
def test_out_of_order_and_redelivered_changes_give_the_same_tables_as_the_clean_stream(
    clean, perturbed, perturbed_in_three_runs, layer, table
):
    expected = content(clean, layer, table)
    assert content(perturbed, layer, table) == expected
    assert content(perturbed_in_three_runs, layer, table) == expected


def test_every_model_documents_exactly_the_columns_it_writes(clean):
    manifest = json.loads((clean / "target" / "manifest.json").read_text())
    for node in manifest["nodes"].values():
        if node["resource_type"] != "model":
            continue
        written = DeltaTable(str(clean / "lake" / node["schema"] / node["name"])).schema().to_arrow().names
        assert list(node["columns"]) == written, node["name"]
        assert all(c["description"] for c in node["columns"].values()), node["name"]


def test_an_event_repeated_in_one_object_is_staged_from_its_first_line(clean, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(clean, root)
    # the same event on lines 4 and 10 of one object: bronze_id sorts "k5@e:10" before "k5@e:4"
    copies = [event(7, "product.viewed", uid(805), 7, "k5") | {"bronze_id": f"k5@e:{n}", "line_number": n,
                                                               "ingested_at": at(2000), "event_source": f"line {n}"}
              for n in (10, 4)]
    write_deltalake(str(root / "lake" / "bronze" / "events"), pa.Table.from_pylist(copies, schema=BRONZE_EVENTS),
                    mode="append")
    dbt(root, "run", "--select", "stg_events__events")
    (staged,) = [r for r in read(root, "silver", "stg_events__events") if r["event_id"] == uid(907)]
    assert (staged["source_bronze_id"], staged["event_source"]) == ("k5@e:4", "line 4")


def test_an_event_object_rewritten_without_an_event_loses_it_in_an_incremental_run_as_in_a_full_build(clean, tmp_path):
    incremental, full = tmp_path / "incremental", tmp_path / "full"
    shutil.copytree(clean, incremental)
    events = DeltaTable(str(incremental / "lake" / "bronze" / "events"))
    # object k1 rewritten (ETag e2) without its fourth event, and its second one a day later; the rewrite
    # supersedes the first version's rows
    events.update(predicate="object_key = 'k1'",
                  updates={"superseded_at": f"'{iso(at(3000))}'::timestamp", "superseded_by_etag": "'e2'"})
    rewritten = [e | {"bronze_id": f"k1@e2:{n}", "etag": "e2", "ingested_at": at(3000)}
                 for n, e in enumerate(EVENTS[:3], start=1)]
    rewritten[1]["event_ts"] += timedelta(days=1)
    write_deltalake(events, pa.Table.from_pylist(rewritten, schema=BRONZE_EVENTS), mode="append")
    shutil.copytree(incremental / "lake" / "bronze", full / "lake" / "bronze")
    dbt(incremental, "run", "--select", "stg_events__events+")
    dbt(full, "run", "--select", "stg_events__events+")

    staged = {r["event_id"]: r["source_bronze_id"] for r in read(incremental, "silver", "stg_events__events")}
    # event 4 is gone; event 1's first current copy is now the one in object k2
    assert staged == {uid(901): "k2@e:1", uid(902): "k1@e2:2", uid(903): "k1@e2:3"}
    assert len(read(incremental, "silver", "stg_events__events")) == 3
    (day,) = read(incremental, "gold", "agg_daily_funnel")
    assert (day["viewing_sessions"], day["product_views"]) == (1, 1)
    for layer, table in (("silver", "stg_events__events"), ("gold", "agg_daily_funnel")):
        assert content(incremental, layer, table) == content(full, layer, table)


def test_an_incremental_run_merges_only_events_that_can_change_the_staged_rows(clean, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(clean, root)
    # a new event, and a repeat of a staged one, within the look-back window of the staged batch
    new = [event(8, "product.viewed", uid(806), 8, "k6") | {"ingested_at": at(1001)},
           EVENTS[0] | {"bronze_id": "k6@e:2", "object_key": "k6", "ingested_at": at(1001)}]
    write_deltalake(str(root / "lake" / "bronze" / "events"), pa.Table.from_pylist(new, schema=BRONZE_EVENTS),
                    mode="append")
    dbt(root, "run", "--select", "stg_events__events")
    (commit,) = DeltaTable(str(root / "lake" / "silver" / "stg_events__events")).history(1)
    metrics = commit["operationMetrics"]
    # the staged rows of the window are not merged again: only the new event is
    assert (metrics["num_source_rows"], metrics["num_target_rows_inserted"], metrics["num_target_rows_updated"]) == (1, 1, 0)
