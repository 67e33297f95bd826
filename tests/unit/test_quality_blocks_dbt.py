"""The gx_suite checks around the dbt models, in real Dagster runs of the real dbt project on a tiny bronze:
an ERROR failure on a bronze table keeps dbt from running, an ERROR failure on a model keeps its children
from being built in the same `dbt build`, and a WARNING failure blocks nothing."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from lineage.emitter import LineageResource
from pipelines.cdc.bronze_schema import BRONZE_CDC
from pipelines.events.bronze_schema import BRONZE_EVENTS, PARTITION_BY
from pipelines.resources import LakehouseSettings
from pipelines.transform.assets import dbt_model_assets, dbt_resource
from quality.checks import build_quality_checks
from tests.unit.test_silver_cdc import C1, O1, TABLES, Change, audit, bronze_rows, customer, order, uid

DAY = "2026-11-01"
BRONZE_ORDERS = dg.AssetKey(["bronze", "cdc_orders"])
STG_ORDERS = dg.AssetKey(["silver", "stg_shop__orders"])
STG_CUSTOMERS = dg.AssetKey(["silver", "stg_shop__customers"])
ORDERS_HISTORY = dg.AssetKey(["silver", "int_orders_history"])
FCT_ORDERS = dg.AssetKey(["gold", "fct_orders"])
DAILY_SALES = dg.AssetKey(["gold", "agg_daily_sales"])


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # the environment names another lake: the checks and dbt (a subprocess of the op) must use the one the
    # `lakehouse` resource names, which the assets wrote
    monkeypatch.setenv("LAKEHOUSE_DATA_DIR", str(tmp_path / "elsewhere"))
    # a settings file named relative to where the run starts (dbt starts elsewhere, in dbt_project/)
    (tmp_path / "settings.yaml").write_text("vacuum_retention_hours: 200\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LAKEHOUSE_CONFIG", "settings.yaml")
    return tmp_path / "lake_of_the_resource"


def write_bronze(data_dir: Path, changes: list[Change]) -> None:
    for table in TABLES:
        mine = [c for c in changes if c.table == table]
        rows = bronze_rows(changes, table, list(range(len(mine))))
        write_deltalake(str(data_dir / "lake" / "bronze" / f"cdc_{table}"), pa.Table.from_pylist(rows, schema=BRONZE_CDC))
    write_deltalake(str(data_dir / "lake" / "bronze" / "events"), pa.Table.from_pylist([], schema=BRONZE_EVENTS),
                    partition_by=PARTITION_BY)


def materialize(data_dir: Path, assets: list, selection=None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        assets,
        selection=selection,
        partition_key=DAY,
        resources={"lakehouse": LakehouseSettings(data_dir=str(data_dir)), "dbt": dbt_resource(),
                   "lineage": LineageResource(lineage_file=str(data_dir / "lineage.jsonl"))},
        raise_on_error=False,
    )


def suite_result(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dg.AssetCheckEvaluation:
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.asset_key == key and e.check_name == "gx_suite"]
    return evaluation


def materialized(result: dg.ExecuteInProcessResult) -> set[dg.AssetKey]:
    return {e.asset_key for e in result.get_asset_materialization_events()}


def test_error_failure_on_bronze_keeps_dbt_from_running(data_dir: Path) -> None:
    write_bronze(data_dir, [Change("customers", "c", 100, customer | {"email": "a@example.com"} | audit(100))])

    @dg.asset(key=BRONZE_ORDERS)
    def cdc_orders() -> None:
        # an op Debezium never sends: the bronze rule PATTERN(op) fails, and no dbt source test looks at it
        (row,) = bronze_rows([Change("orders", "c", 150, order | {"status": "PENDING"} | audit(150))], "orders", [0])
        write_deltalake(str(data_dir / "lake" / "bronze" / "cdc_orders"),
                        pa.Table.from_pylist([row | {"op": "z"}], schema=BRONZE_CDC), mode="overwrite")

    result = materialize(data_dir, [cdc_orders, *dbt_model_assets, *build_quality_checks([BRONZE_ORDERS])],
                         selection=dg.AssetSelection.assets(BRONZE_ORDERS, STG_ORDERS, STG_CUSTOMERS))

    evaluation = suite_result(result, BRONZE_ORDERS)
    assert (evaluation.passed, evaluation.severity) == (False, dg.AssetCheckSeverity.ERROR)
    assert materialized(result) == {BRONZE_ORDERS}
    assert not (data_dir / "lake" / "silver").exists()
    assert not (data_dir.parent / "elsewhere").exists()


def test_error_failure_on_a_model_keeps_its_children_from_being_built(data_dir: Path) -> None:
    write_bronze(data_dir, [
        Change("customers", "c", 100, customer | {"email": "a@example.com"} | audit(100)),
        # a negative total: silver.stg_shop__orders' ERROR rule RANGE(total_amount >= 0); no dbt test checks it
        Change("orders", "c", 150, order | {"status": "CONFIRMED", "total_amount": "-5.00"} | audit(150)),
    ])

    result = materialize(data_dir, dbt_model_assets)

    evaluation = suite_result(result, STG_ORDERS)
    assert (evaluation.passed, evaluation.severity) == (False, dg.AssetCheckSeverity.ERROR)
    assert evaluation.metadata["failed_rules"].value == ["range:total_amount"]
    assert "rules" in evaluation.metadata  # what every rule found, as the Dagster-side checks show it
    built = materialized(result)
    assert STG_ORDERS in built and STG_CUSTOMERS in built  # the customers' branch does not depend on it
    assert not {ORDERS_HISTORY, FCT_ORDERS, DAILY_SALES} & built
    assert not (data_dir / "lake" / "silver" / "int_orders_history").exists()

    stored = DeltaTable(str(data_dir / "lake" / "quality" / "results")).to_pyarrow_table().to_pylist()
    failed = [r for r in stored if r["table_name"] == "silver.stg_shop__orders" and not r["passed"]]
    assert [(r["rule_type"], r["column_name"], r["run_id"]) for r in failed] == [("RANGE", "total_amount", result.run_id)]

    events = [json.loads(line) for line in (data_dir / "lineage.jsonl").read_text().splitlines()]
    (complete,) = [e for e in events if e["job"]["name"] == "silver.stg_shop__orders.gx_suite" and e["eventType"] == "COMPLETE"]
    assertions = complete["inputs"][0]["inputFacets"]["dataQualityAssertions"]["assertions"]
    assert [(a["assertion"], a["column"]) for a in assertions if not a["success"]] == [("range", "total_amount")]


def test_warning_failure_on_a_model_blocks_nothing(data_dir: Path) -> None:
    write_bronze(data_dir, [
        Change("customers", "c", 100, customer | {"email": "a@example.com"} | audit(100)),
        # a customer gold does not know: gold.fct_orders' WARNING rule REFERENCE(customer_id) fails
        Change("orders", "c", 150, order | {"order_id": O1, "customer_id": uid(99), "status": "CONFIRMED"} | audit(150)),
    ])
    assert customer["customer_id"] == C1

    result = materialize(data_dir, dbt_model_assets)

    evaluation = suite_result(result, FCT_ORDERS)
    assert (evaluation.passed, evaluation.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert evaluation.metadata["failed_rules"].value == ["reference:customer_id"]
    assert {FCT_ORDERS, DAILY_SALES} <= materialized(result)
    assert suite_result(result, DAILY_SALES).passed
    # dbt's source tests are not Dagster checks: no stray observations (each came with a warning)
    assert not [e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]

    # the models' lineage runs carry column lineage, read from the SQL dbt compiled in this run
    events = [json.loads(line) for line in (data_dir / "lineage.jsonl").read_text().splitlines()]
    (complete,) = [e for e in events if e["job"]["name"] == "dbt.gold.agg_daily_sales" and e["eventType"] == "COMPLETE"]
    fields = complete["outputs"][0]["facets"]["columnLineage"]["fields"]
    assert [(f["name"].rsplit("/", 1)[-1], f["field"]) for f in fields["total_revenue"]["inputFields"]] == [
        ("int_orders_current", "total_amount")]
