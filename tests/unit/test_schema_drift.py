"""Schema drift of a source table while the pipeline runs: columns added, dropped and retyped in Postgres
arrive as new Debezium value schemas (bronze/cdc_schemas). Staging keeps working and a WARNING names each
change until the model follows."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import pyarrow as pa
from deltalake import write_deltalake

from pipelines.cdc.bronze_schema import BRONZE_CDC, CDC_SCHEMAS
from pipelines.cdc.schema_drift import drift_messages, row_columns
from tests.unit.test_silver_cdc import PROJECT, TABLES, in_order, read, write_lake
from tests.unit.test_silver_rejects import _good_order, _order_row, ok, orders_topic_length, run_dbt

ORDERS_VALUE = json.loads((PROJECT / "tests" / "fixtures" / "local" / "pg_shop_orders_c.value.json").read_text())
# the source columns staging reads of public.orders (shop_tables.sql), as Debezium names them
KNOWN = [f["field"] for f in next(f for f in ORDERS_VALUE["schema"]["fields"] if f["field"] == "after")["fields"]]


def prefix_of(schema: dict) -> str:
    return '{"schema":' + json.dumps(schema, separators=(",", ":")) + ',"payload":'


def drifted_schema() -> dict:
    """public.orders after `ADD COLUMN coupon_code text`, `DROP COLUMN deleted_by` and `ALTER COLUMN
    total_amount TYPE numeric(14,4)`, as Debezium describes it."""
    schema = copy.deepcopy(ORDERS_VALUE["schema"])
    for row in (f for f in schema["fields"] if f["field"] in ("before", "after")):
        row["fields"] = [f for f in row["fields"] if f["field"] != "deleted_by"]
        row["fields"].append({"type": "string", "optional": True, "field": "coupon_code"})
        total = next(f for f in row["fields"] if f["field"] == "total_amount")
        total["parameters"] = {"scale": "4", "connect.decimal.precision": "14"}
    return schema


def test_the_schema_of_a_debezium_envelope_names_the_row_columns_and_their_types():
    columns = row_columns(prefix_of(ORDERS_VALUE["schema"]))
    assert list(columns) == KNOWN
    assert str(columns["total_amount"]) == "org.apache.kafka.connect.data.Decimal(12,2)"
    assert str(columns["version"]) == "int32"


def test_added_dropped_and_retyped_columns_are_each_named_once():
    messages = drift_messages("orders", KNOWN, prefix_of(drifted_schema()), prefix_of(ORDERS_VALUE["schema"]))
    assert messages == [
        "new column coupon_code in public.orders: bronze keeps it, silver does not have it yet",
        "column deleted_by is not in public.orders any more: silver fills NULL",
        "column total_amount of public.orders changed type from org.apache.kafka.connect.data.Decimal(12,2) to "
        "org.apache.kafka.connect.data.Decimal(14,4): silver types its values or rejects them (silver.rejects)",
    ]
    assert drift_messages("orders", KNOWN, prefix_of(ORDERS_VALUE["schema"]), None) == []


def test_staging_keeps_working_through_drift_and_its_check_warns_with_the_columns(tmp_path):
    write_lake(tmp_path, {t: in_order(t) for t in TABLES})
    first = orders_topic_length()
    drifted = [_order_row(first + n, {k: v for k, v in _good_order(n).items() if k != "deleted_by"}
                          | {"coupon_code": "WELCOME10", "total_amount": "29.9900"}, lsn=str(2000 + n))
               for n in range(3)]
    write_deltalake(str(tmp_path / "lake" / "bronze" / "cdc_orders"), pa.Table.from_pylist(drifted, schema=BRONZE_CDC),
                    mode="append")
    seen = datetime(2026, 11, 1, tzinfo=UTC)
    schemas = [{"schema_id": f"s{n}", "topic": "shop.public.orders", "envelope_prefix": prefix_of(schema),
                "first_seen": seen.replace(hour=n), "ingest_batch_id": "test"}
               for n, schema in enumerate([ORDERS_VALUE["schema"], drifted_schema()])]
    write_deltalake(str(tmp_path / "lake" / "bronze" / "cdc_schemas"), pa.Table.from_pylist(schemas, schema=CDC_SCHEMAS))

    # staging alone, on a new lake (silver.rejects not built yet): a warning, not a failure
    done = ok(run_dbt(tmp_path, "build", "--select", "stg_shop__orders"))
    assert "WARN" in done.stdout
    messages = json.loads((tmp_path / "target" / "schema_drift" / "orders.json").read_text())
    assert {m.split(":")[0] for m in messages} == {
        "new column coupon_code in public.orders", "column deleted_by is not in public.orders any more",
        "column total_amount of public.orders changed type from org.apache.kafka.connect.data.Decimal(12,2) to "
        "org.apache.kafka.connect.data.Decimal(14,4)"}
    staged = {r["source_bronze_id"]: r for r in read(tmp_path, "silver", "stg_shop__orders")}
    for row in drifted:  # staged, not rejected: 29.9900 fits decimal(12,2); the dropped column is NULL
        assert staged[row["bronze_id"]]["deleted_by"] is None
        assert str(staged[row["bronze_id"]]["total_amount"]) == "29.99"
