"""Silver never fails on a row: change events bronze holds that cannot become a row of their entity go to
silver.rejects, once, with the columns and a reason, and silver and gold come out exactly as if those events
had never arrived. The source's history is test_silver_cdc's; the bad events are written down here, each
with the columns and the reason it must be rejected for."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from pipelines.cdc.bronze_schema import BRONZE_CDC
from pipelines.cdc.decode_workers import decode_chunk
from tests.unit.test_silver_cdc import (
    C1, CHANGES, DBT, O1, PROJECT, TABLES, at, audit, bronze_rows, content, in_order, order, read, uid,
    write_batch, write_lake,
)

FIXTURES = PROJECT / "tests" / "fixtures" / "debezium" / "events"
ORDERS_TOPIC = "shop.public.orders"
# every silver and gold table that holds shop entities (not the staging tables, which carry run columns)
COMPARED = [("silver", f"int_{t}_{kind}") for t in TABLES for kind in ("current", "history")] + [
    ("gold", t) for t in ("fct_orders", "fct_order_items", "dim_customers", "dim_products", "agg_daily_sales",
                          "agg_hourly_revenue", "customer_features")
]


@dataclass(frozen=True)
class Bad:
    """A bronze row of the orders topic that must be rejected for `columns`, with a reason containing `says`."""
    row: dict
    columns: frozenset[str]
    says: str


def _order_row(offset: int, row: dict | None, **bronze) -> dict:
    """A bronze row of an order insert at `offset`, as ingest writes it (see test_silver_cdc.bronze_rows)."""
    base = bronze_rows([c for c in CHANGES if c.table == "orders"][:1], "orders", [0])[0]
    return base | {"bronze_id": f"{ORDERS_TOPIC}/0/{offset}", "offset": offset,
                   "after": None if row is None else json.dumps(row)} | bronze


def _decoded_row(offset: int, value: bytes, key: bytes | None) -> dict:
    """What bronze ingest stores for a Kafka record of the orders topic (the real decoder)."""
    chunk = decode_chunk(ORDERS_TOPIC, False, None, [(0, offset, 1_700_000_000_000, key, value, False)])
    assert not chunk.quarantine, chunk.quarantine  # these decode: bronze keeps them, silver must not
    (row,) = chunk.rows.to_pylist()
    return row | {"topic": ORDERS_TOPIC, "ingested_at": at(1000), "ingest_batch_id": "test", "ingest_date": date(2026, 11, 1)}


def _good_order(n: int) -> dict:
    return order | {"order_id": uid(500 + n), "status": "PENDING"} | audit(400 + n)


def bad_rows(first_offset: int) -> list[Bad]:
    mongo_value = json.dumps({
        "after": json.dumps({"_id": {"$oid": "5f1e2d3c4b5a697887766554"}, "order_id": "x"}),
        "source": {"version": "3.6.1.Final", "connector": "mongodb", "name": "fulfillment", "ts_ms": 1_700_000_000_000,
                   "snapshot": "false", "db": "inventory", "rs": "rs0", "collection": "orders", "ord": 31},
        "op": "c", "ts_ms": 1_700_000_000_100,
    }).encode()
    made = [
        # the two events of the issue: another connector writing to the orders topic
        Bad(_decoded_row(0, (FIXTURES / "mysql_tutorial_customers_1005_create.value.json").read_bytes(),
                         (FIXTURES / "mysql_tutorial_customers_1004_key.json").read_bytes()),
            frozenset({"order_id", "lsn"}), "a change of mysql inventory.?.customers, not of postgresql shop.public.orders"),
        Bad(_decoded_row(0, mongo_value, b'{"id": "{\\"$oid\\": \\"5f1e2d3c4b5a697887766554\\"}"}'),
            frozenset({"order_id", "lsn"}), "a change of mongodb inventory.?.orders"),
        # another database or table than the topic's
        Bad(_order_row(0, _good_order(1), source_database="archive", lsn="401"), frozenset(), "a change of postgresql archive.public.orders"),
        Bad(_order_row(0, _good_order(2), source_table="customers", lsn="402"), frozenset(), "public.customers, not of"),
        # values that do not fit their type
        Bad(_order_row(0, _good_order(3), lsn="0/16B3748"), frozenset({"lsn"}), "do not fit their type: lsn ubigint"),
        Bad(_order_row(0, _good_order(4) | {"customer_id": "not-a-uuid"}, lsn="404"), frozenset({"customer_id"}),
            "customer_id uuid"),
        Bad(_order_row(0, _good_order(5) | {"total_amount": "29.999"}, lsn="405"), frozenset({"total_amount"}),
            "total_amount decimal(12, 2)"),  # numeric(14,4) values that silver's decimal(12,2) would round
        Bad(_order_row(0, _good_order(6) | {"subtotal": "123456789012.00"}, lsn="406"), frozenset({"subtotal"}),
            "subtotal decimal(12, 2)"),
        Bad(_order_row(0, _good_order(7) | {"order_ts": "yesterday"}, lsn="407"), frozenset({"order_ts"}),
            "order_ts timestamptz"),
        Bad(_order_row(0, _good_order(8) | {"status": "LOST"}, lsn="408"), frozenset({"status"}),
            "status one of PENDING,CONFIRMED,SHIPPED,DELIVERED,CANCELLED"),
        Bad(_order_row(0, _good_order(9) | {"version": 2**40}, lsn="409"), frozenset({"row_version"}), "row_version integer"),
        Bad(_order_row(0, _good_order(10) | {"shipping_address": "{not json"}, lsn="410"), frozenset({"shipping_address"}),
            "shipping_address json"),
        # no key, or a Kafka key that names another order
        Bad(_order_row(0, {k: v for k, v in _good_order(11).items() if k != "order_id"}, lsn="411"),
            frozenset({"order_id"}), "no primary key order_id"),
        Bad(_order_row(0, _good_order(12), lsn="412", record_key=json.dumps({"order_id": uid(999)})),
            frozenset({"order_id"}), "the Kafka record key names another order_id"),
        Bad(_order_row(0, _good_order(13), lsn=None), frozenset({"lsn"}), "no LSN to order it by"),
    ]
    return [Bad(b.row | {"bronze_id": f"{ORDERS_TOPIC}/0/{first_offset + i}", "offset": first_offset + i}, b.columns, b.says)
            for i, b in enumerate(made)]


def write_bad(root: Path, bad: list[Bad], ingested_at=None) -> None:
    rows = [b.row | ({"ingested_at": ingested_at} if ingested_at else {}) for b in bad]
    write_deltalake(str(root / "lake" / "bronze" / "cdc_orders"), pa.Table.from_pylist(rows, schema=BRONZE_CDC),
                    mode="append", schema_mode="merge")


def run_dbt(root: Path, *args: str) -> subprocess.CompletedProcess:
    # DBT_TARGET_PATH: where the gx_suite tests leave their outcomes, as under Dagster
    env = {**os.environ, "LAKEHOUSE_DATA_DIR": str(root), "PYTHONPATH": str(PROJECT), "DBT_TARGET_PATH": str(root / "target")}
    env.pop("LAKEHOUSE_CONFIG", None)
    return subprocess.run(
        [DBT, *args, "--project-dir", str(PROJECT / "dbt_project"), "--profiles-dir", str(PROJECT / "dbt_project"),
         "--target-path", str(root / "target"), "--log-path", str(root / "logs")],
        cwd=PROJECT / "dbt_project", env=env, capture_output=True, text=True, timeout=600,
    )


def ok(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    return done


def orders_topic_length() -> int:
    return len(bronze_rows(CHANGES, "orders", in_order("orders")))


def assert_rejected_once(root: Path, bad: list[Bad]) -> None:
    rejects = read(root, "silver", "rejects")
    assert sorted(r["bronze_id"] for r in rejects) == sorted(b.row["bronze_id"] for b in bad)
    by_id = {r["bronze_id"]: r for r in rejects}
    for b in bad:
        got = by_id[b.row["bronze_id"]]
        assert (got["source_table"], got["model"]) == ("bronze.cdc_orders", "stg_shop__orders")
        assert frozenset(got["reject_columns"]) == b.columns, (b.says, got)
        assert b.says in got["reason"], (b.says, got["reason"])


def assert_reconciles(root: Path) -> None:
    for table in TABLES:
        bronze = [r for r in read(root, "bronze", f"cdc_{table}") if r["kind"] == "change"]
        staged = {r["source_bronze_id"] for r in read(root, "silver", f"stg_shop__{table}")}
        rejected = {r["bronze_id"] for r in read(root, "silver", "rejects") if r["source_table"] == f"bronze.cdc_{table}"}
        assert not staged & rejected, table
        assert staged | rejected == {r["bronze_id"] for r in bronze}, table
        assert len(staged) + len(rejected) == len(bronze), table


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clean")
    write_lake(root, {t: in_order(t) for t in TABLES})
    ok(run_dbt(root, "run"))
    return root


def test_bad_change_events_are_rejected_once_with_their_reason_and_silver_and_gold_are_as_without_them(clean, tmp_path):
    bad = bad_rows(first_offset=orders_topic_length())
    write_lake(tmp_path, {t: in_order(t) for t in TABLES})
    write_bad(tmp_path, bad)
    ok(run_dbt(tmp_path, "run"))  # no model fails on a row (what the quality rules make of so many: below)
    assert_rejected_once(tmp_path, bad)
    assert_reconciles(tmp_path)
    ok(run_dbt(tmp_path, "test", "--select", "test_name:reconciles_with_bronze"))
    for layer, table in COMPARED:
        assert content(tmp_path, layer, table) == content(clean, layer, table), table


def test_rejects_arriving_in_later_runs_are_recorded_once_and_a_full_refresh_gives_the_same(clean, tmp_path):
    bad = bad_rows(first_offset=orders_topic_length())
    later = write_lake(tmp_path, {t: in_order(t) for t in TABLES}, batches=2)
    ok(run_dbt(tmp_path, "run"))
    write_bad(tmp_path, bad[:5], ingested_at=at(2000))  # with the second batch of every topic
    write_batch(tmp_path, later[0])
    ok(run_dbt(tmp_path, "run"))
    write_bad(tmp_path, bad[5:], ingested_at=at(3000))  # a batch of nothing but rejects
    ok(run_dbt(tmp_path, "run"))
    ok(run_dbt(tmp_path, "run"))  # and a run with nothing new
    ok(run_dbt(tmp_path, "test", "--select", "test_name:reconciles_with_bronze"))
    assert DeltaTable(str(tmp_path / "lake" / "silver" / "rejects")).history(1)[0]["operation"] == "WRITE"
    assert_rejected_once(tmp_path, bad)
    assert_reconciles(tmp_path)
    incremental = {(layer, table): content(tmp_path, layer, table) for layer, table in COMPARED}
    assert incremental == {(layer, table): content(clean, layer, table) for layer, table in COMPARED}
    ok(run_dbt(tmp_path, "run", "--full-refresh"))
    assert_rejected_once(tmp_path, bad)
    assert {(layer, table): content(tmp_path, layer, table) for layer, table in COMPARED} == incremental


def _failed_rules(root: Path, table: str) -> dict[str, str]:
    """The rules of `table`'s suite that failed in the last dbt build, with their severity."""
    outcome = json.loads((root / "target" / "quality" / f"{table}.json").read_text())
    return {r["rule"]["name"]: r["rule"]["severity"] for r in outcome["rules"] if not r["passed"]}


def test_one_reject_is_a_warning_and_many_block_only_the_children_of_their_staging_model(tmp_path):
    write_lake(tmp_path, {t: in_order(t) for t in TABLES})
    first = orders_topic_length()
    (one,) = bad_rows(first_offset=first)[7:8]
    more_orders = [_order_row(first + 100 + n, _good_order(100 + n), lsn=str(1000 + n)) for n in range(30)]
    write_bad(tmp_path, [one, *(Bad(row, frozenset(), "") for row in more_orders)])
    ok(run_dbt(tmp_path, "build"))  # one reject among 34 change events: a WARNING, the whole lake is built
    assert _failed_rules(tmp_path, "silver.stg_shop__orders") == {"rejects:processed_at>0%": "WARNING"}
    assert {r["order_id"] for r in read(tmp_path, "silver", "int_orders_current")} == {O1} | {uid(600 + n) for n in range(30)}

    # a run whose orders are mostly rejects: the orders branch waits, the customers branch is built
    many = [_order_row(first + 200 + n, _good_order(20 + n) | {"status": "LOST"}, lsn=str(500 + n), ingested_at=at(5000))
            for n in range(3)]
    new_customer = bronze_rows(CHANGES, "customers", [0])[0] | {
        "bronze_id": "shop.public.customers/0/99", "offset": 99, "lsn": "600", "ingested_at": at(5000),
        "after": json.dumps(json.loads(bronze_rows(CHANGES, "customers", [0])[0]["after"]) | {"customer_id": uid(700)}),
    }
    write_deltalake(str(tmp_path / "lake" / "bronze" / "cdc_orders"), pa.Table.from_pylist(many, schema=BRONZE_CDC), mode="append")
    write_deltalake(str(tmp_path / "lake" / "bronze" / "cdc_customers"), pa.Table.from_pylist([new_customer], schema=BRONZE_CDC),
                    mode="append")
    history_before = content(tmp_path, "silver", "int_orders_history")
    done = run_dbt(tmp_path, "build")
    assert done.returncode == 1
    status = {r["unique_id"]: r["status"] for r in json.loads((tmp_path / "target" / "run_results.json").read_text())["results"]}
    assert status["model.lakehouse.stg_shop__orders"] == "success"
    assert status["model.lakehouse.int_orders_history"] == status["model.lakehouse.fct_orders"] == "skipped"
    assert status["model.lakehouse.int_customers_current"] == status["model.lakehouse.dim_customers"] == "success"
    assert _failed_rules(tmp_path, "silver.stg_shop__orders") == {
        "rejects:processed_at>0%": "WARNING", "rejects:processed_at>5%": "ERROR"}
    assert content(tmp_path, "silver", "int_orders_history") == history_before  # skipped
    assert uid(700) in {r["customer_id"] for r in read(tmp_path, "silver", "int_customers_current")}
    assert len(read(tmp_path, "silver", "rejects")) == 4
    assert C1 in {r["customer_id"] for r in read(tmp_path, "silver", "int_customers_current")}
