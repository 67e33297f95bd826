"""Workload → Postgres → Debezium → Kafka → bronze → dbt → gold, compared with SQL on the source."""

import json
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import psycopg
import pytest
import yaml
from confluent_kafka import Consumer, TopicPartition

from pipelines.analyst import open_lake
from pipelines.cdc.ingest import CDC_STREAMS, bronze_table_name, topic_for
from pipelines.run import materialize_all
from pipelines.stack.capture import wait_until_captured
from pipelines.workload.model import TABLES
from pipelines.workload.oracle import GOLD_COLUMNS, daily_funnel, gold_table, read_event_lines, version_counts
from pipelines.workload.writer import run_workload

pytestmark = pytest.mark.stack
DBT_PROJECT_FILE = Path(__file__).resolve().parents[2] / "dbt_project" / "dbt_project.yml"


# SCD2 gold tables hold every version; the oracle knows the source's current rows only
SCD2_TABLES = {"fct_orders": ("order_id", "orders"), "dim_customers": ("customer_id", "customers")}
JSON_COLUMNS = {"attributes", "shipping_address"}
# silver's names for source columns it renames (see dbt_project/macros/shop_tables.sql)
SILVER_NAMES = {"version": "row_version", "processed_at": "payment_processed_at"}


def _comparable(columns, row):
    """Values as both sides can hold them: UUIDs as text (Delta has no UUID type), JSON parsed."""
    out = []
    for column, value in zip(columns, row, strict=True):
        if isinstance(value, UUID):
            value = str(value)
        if column in JSON_COLUMNS and value is not None:
            value = json.loads(value)
        out.append(value)
    return tuple(out)


def _sorted(columns, rows):
    return sorted((_comparable(columns, r) for r in rows), key=lambda r: str(r[0]))


def _gold(settings, table):
    columns = GOLD_COLUMNS[table]
    where = " where is_current" if table in SCD2_TABLES else ""
    rows = open_lake(settings).sql(f"select {', '.join(columns)} from gold.{table}{where}").fetchall()
    return _sorted(columns, rows)


def _oracle(settings, table):
    if table == "agg_daily_funnel":
        rows = daily_funnel(read_event_lines(settings))
    else:
        calendar = yaml.safe_load(DBT_PROJECT_FILE.read_text())["vars"]
        with psycopg.connect(settings.postgres_dsn) as conn:
            rows = gold_table(conn, table, calendar=(calendar["dim_date_start"], calendar["dim_date_end"]))
    return _sorted(GOLD_COLUMNS[table], rows)


def _assert_gold_equals_the_oracle(settings):
    for table in GOLD_COLUMNS:
        gold = _gold(settings, table)
        assert gold, f"gold.{table} is empty"
        assert gold == _oracle(settings, table), f"gold.{table} differs from the oracle"
    conn = open_lake(settings)
    for table, (key, source) in SCD2_TABLES.items():
        versions = dict(conn.sql(f"select {key}, count(*) from gold.{table} group by 1").fetchall())
        with psycopg.connect(settings.postgres_dsn) as pg:
            expected = {str(k): v for k, v in version_counts(pg, source).items()}
        # one version per insert and update in the source (keys deleted there keep their closed versions,
        # and the current rows compared above hold none of them)
        assert {k: versions.get(k) for k in expected} == expected, table


def _assert_silver_current_state_equals_the_source(settings):
    """Every int_<table>_current holds exactly the source table's rows, every column, exact values."""
    lake = open_lake(settings)
    with psycopg.connect(settings.postgres_dsn) as pg:
        for table in TABLES:
            columns = [name for (name,) in pg.execute(
                "select column_name from information_schema.columns where table_schema = 'public' "
                "and table_name = %s order by ordinal_position", (table,)).fetchall()]
            source = pg.execute(f'select {", ".join(columns)} from public."{table}"').fetchall()
            silver_columns = [SILVER_NAMES.get(c, c) for c in columns]
            silver = lake.sql(f"select {', '.join(silver_columns)} from silver.int_{table}_current").fetchall()
            source_rows = [tuple(json.dumps(v) if isinstance(v, dict) else v for v in r) for r in source]
            assert _sorted(columns, silver) == _sorted(columns, source_rows), f"silver.int_{table}_current"


def _topic_end_offsets(settings, topic):
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "e2e-check"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in partitions}
    finally:
        consumer.close()


def _load_and_materialize(settings, **workload):
    run_workload(settings, **workload)
    wait_until_captured(settings)
    result = materialize_all(log_level="WARNING")
    assert result.success
    failed = [c.check_name for c in result.check_evaluations() if not c.passed]
    assert failed == []


def test_silver_and_every_gold_table_equal_sql_on_the_source_after_each_workload(stack):
    _load_and_materialize(stack, seed=101, customers=40, days=3)
    _assert_silver_current_state_equals_the_source(stack)
    _assert_gold_equals_the_oracle(stack)
    first = _gold(stack, "agg_daily_sales")
    # abandoned orders were hard-deleted: gold keeps their closed versions only
    deleted = open_lake(stack).sql("select count(distinct order_id) from gold.fct_orders where order_id not in "
                                   "(select order_id from gold.fct_orders where is_current)").fetchone()[0]
    assert deleted > 0

    # a second, later workload on the same database: the pipeline picks up what is new
    _load_and_materialize(stack, seed=102, customers=25, days=2, start=datetime(2026, 11, 3, tzinfo=UTC))
    _assert_silver_current_state_equals_the_source(stack)
    _assert_gold_equals_the_oracle(stack)
    assert _gold(stack, "agg_daily_sales") != first


def test_bronze_holds_every_kafka_record_exactly_once(stack):
    _load_and_materialize(stack, seed=103, customers=10, days=1)
    conn = open_lake(stack)
    for stream in CDC_STREAMS:
        topic, table = topic_for(stack, stream), bronze_table_name(stream)
        rows = conn.sql(
            f'select "partition", count(*), count(distinct "offset"), min("offset"), max("offset") '
            f"from bronze.{table} group by 1"
        ).fetchall()
        counts = {r[0]: r[1:] for r in rows}
        for partition, (low, high) in _topic_end_offsets(stack, topic).items():
            rows, distinct, first, last = counts[partition]
            assert rows == distinct == high - low, (table, partition)
            assert (first, last) == (low, high - 1), (table, partition)
    # a real Debezium stream decodes completely: nothing quarantined
    assert "bronze.quarantine" not in {f"{s}.{t}" for s, t in conn.sql("select schema_name, table_name from duckdb_tables() union all select schema_name, view_name from duckdb_views()").fetchall()}


def test_every_asset_run_leaves_lineage_and_quality_results(stack):
    _load_and_materialize(stack, seed=104, customers=10, days=1)
    conn = open_lake(stack)
    events = [json.loads(line) for line in stack.lineage_file.read_text().splitlines()]
    by_job: dict[str, list[dict]] = {}
    for event in events:
        by_job.setdefault(event["job"]["name"], []).append(event)
    for job, table in [("bronze.cdc_orders", "bronze.cdc_orders"), ("dbt.gold.agg_daily_sales", "gold.agg_daily_sales")]:
        last_run = by_job[job][-1]["run"]["runId"]
        states = [e["eventType"] for e in by_job[job] if e["run"]["runId"] == last_run]
        assert states == ["START", "COMPLETE"], job
        complete = by_job[job][-1]
        output = complete["outputs"][0]
        rows = conn.sql(f"select count(*) from {table}").fetchone()[0]
        assert output["outputFacets"]["outputStatistics"]["rowCount"] == rows
        columns = [f["name"] for f in output["facets"]["schema"]["fields"]]
        assert columns == [d[0] for d in conn.sql(f"select * from {table} limit 0").description]
    assert by_job["bronze.cdc_orders"][-1]["inputs"][0]["namespace"].startswith("kafka://")

    checked = dict(conn.sql("select table_name, bool_and(passed) from quality.results group by 1").fetchall())
    assert checked.keys() >= {"bronze.cdc_orders", "bronze.events", "silver.int_orders_current", "gold.agg_daily_sales"}
    assert all(checked.values())
