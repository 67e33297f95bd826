"""A lake root on S3 (DESIGN.md §3: `s3://bucket/prefix` in production), against the stack's moto S3:
dbt builds silver and gold there, and analysts' views and the lake upkeep find and read the Delta tables
as they do on a local disk."""

from __future__ import annotations

import os
import subprocess
import uuid
from dataclasses import replace

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from pipelines.analyst import open_lake
from pipelines.cdc.bronze_schema import BRONZE_CDC
from pipelines.events.bronze_schema import BRONZE_EVENTS, PARTITION_BY
from pipelines.lake import delta_tables, register_lake_views
from pipelines.maintenance import maintain_lake
from pipelines.s3 import s3_client

pytestmark = pytest.mark.stack


@pytest.fixture
def settings(stack):
    """The test's own lake under a fresh prefix of the stack's bucket, with its vacuum at once."""
    return replace(stack, lake_root=f"s3://{stack.s3_bucket}/lake-{uuid.uuid4().hex[:12]}", vacuum_retention_hours=0)


def _write(settings, layer, table, data, mode="append"):
    write_deltalake(settings.layer_path(layer, table), pa.table(data), mode=mode,
                    storage_options=settings.delta_storage_options())


def _parquet_keys(settings, layer, table) -> list[str]:
    prefix = settings.layer_path(layer, table).removeprefix(f"s3://{settings.s3_bucket}/") + "/"
    pages = s3_client(settings).get_paginator("list_objects_v2").paginate(Bucket=settings.s3_bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", []) if o["Key"].endswith(".parquet")]


def test_analysts_query_delta_tables_of_a_lake_on_s3(settings):
    _write(settings, "gold", "agg_x", {"n": [1, 2, 3]})
    _write(settings, "silver", "int_y", {"k": ["a"]})
    conn = open_lake(settings)
    assert conn.sql("select sum(n) from gold.agg_x").fetchone() == (6,)
    assert register_lake_views(conn, settings) == ["silver.int_y", "gold.agg_x"]  # again: the secret is replaced


def test_upkeep_compacts_and_vacuums_a_lake_on_s3(settings):
    for batch in range(3):
        _write(settings, "bronze", "cdc_orders", {"offset": [batch]})
    _write(settings, "gold", "agg_x", {"n": [1]})
    _write(settings, "gold", "agg_x", {"n": [2]}, mode="overwrite")
    results = {r.table: r for r in maintain_lake(settings)}
    assert all(r.error is None for r in results.values()), results
    assert (results["bronze.cdc_orders"].files_compacted, results["bronze.cdc_orders"].files_deleted) == (3, 3)
    assert results["gold.agg_x"].files_deleted == 1
    assert len(_parquet_keys(settings, "bronze", "cdc_orders")) == 1 and len(_parquet_keys(settings, "gold", "agg_x")) == 1
    assert open_lake(settings).sql("select sum(\"offset\") from bronze.cdc_orders").fetchone() == (3,)


def test_dbt_builds_the_same_silver_and_gold_on_s3_as_on_a_local_disk(stack, settings, tmp_path):
    from tests.unit import test_silver_cdc as silver

    local = tmp_path / "local"
    silver.write_lake(local, {t: silver.in_order(t) for t in silver.TABLES})
    silver.dbt(local, "run")

    options = settings.delta_storage_options()
    for table in silver.TABLES:
        rows = silver.bronze_rows(silver.CHANGES, table, silver.in_order(table))
        write_deltalake(settings.bronze_path(f"cdc_{table}"), pa.Table.from_pylist(rows, schema=BRONZE_CDC),
                        storage_options=options)
    write_deltalake(settings.bronze_path("events"), pa.Table.from_pylist(silver.EVENTS, schema=BRONZE_EVENTS),
                    partition_by=PARTITION_BY, storage_options=options)
    env = {**os.environ, "LAKEHOUSE_DATA_DIR": str(stack.data_dir), "LAKEHOUSE_LAKE_ROOT": settings.lake_root,
           "PYTHONPATH": str(silver.PROJECT)}
    env.pop("LAKEHOUSE_CONFIG", None)
    done = subprocess.run(
        [silver.DBT, "run", "--project-dir", "dbt_project", "--profiles-dir", "dbt_project",
         "--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs")],
        cwd=silver.PROJECT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]

    local_settings = replace(settings, lake_root=str(local / "lake"))
    built = [(layer, table) for layer in ("silver", "gold") for table in delta_tables(local_settings, layer)]
    assert len(built) > 25 and [t for layer, t in built if layer == "silver"] == delta_tables(settings, "silver")
    for layer, table in built:
        rows = DeltaTable(settings.layer_path(layer, table), storage_options=options).to_pyarrow_table().to_pylist()
        assert silver.rows_content(rows) == silver.content(local, layer, table), f"{layer}.{table}"
    assert open_lake(settings).sql("select count(*) from gold.fct_orders").fetchone()[0] > 0

