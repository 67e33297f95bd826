"""The gx_suite asset checks in a real (tiny) Dagster graph: ERROR failures block downstream assets."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from dagster import AssetCheckSeverity, AssetKey, Definitions, asset

from lineage.emitter import LineageResource
from pipelines.resources import LakehouseSettings
from pipelines.settings import load_settings
from quality.checks import build_quality_checks

ORDERS = AssetKey(["silver", "orders"])
DAILY = AssetKey(["gold", "daily"])


@pytest.fixture
def lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LAKEHOUSE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LAKEHOUSE_LAKE_ROOT", str(tmp_path / "lake"))
    monkeypatch.delenv("LAKEHOUSE_CONFIG", raising=False)
    return tmp_path / "lake"


def _rules_file(tmp_path: Path, severity: str) -> Path:
    path = tmp_path / "rules.yml"
    path.write_text(
        f"""
- table: silver.orders
  column: order_id
  rule_type: UNIQUE
  severity: ERROR
- table: silver.orders
  column: customer_id
  rule_type: NOT_NULL
  severity: {severity}
"""
    )
    return path


def _graph(lake: Path):
    @asset(key=ORDERS)
    def orders() -> None:
        table = pa.table({"order_id": ["o1", "o2", "o3"], "customer_id": ["c1", None, "c3"]})
        write_deltalake(str(lake / "silver" / "orders"), table, mode="overwrite")

    @asset(key=DAILY, deps=[ORDERS])
    def daily() -> None:
        write_deltalake(str(lake / "gold" / "daily"), pa.table({"n": [3]}), mode="overwrite")

    return [orders, daily]


def _run(lake: Path, rules_file: Path):
    checks = build_quality_checks([ORDERS, DAILY], rules_file=rules_file)
    lineage = LineageResource(lineage_file=str(lake.parent / "lineage.jsonl"))
    defs = Definitions(assets=_graph(lake), asset_checks=checks, resources={"lakehouse": LakehouseSettings(), "lineage": lineage})
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(raise_on_error=False)


def _lineage_events(lake: Path) -> list[dict]:
    return [json.loads(line) for line in (lake.parent / "lineage.jsonl").read_text().splitlines()]


def _check_evaluation(result, key: AssetKey):
    evaluations = [e for e in result.get_asset_check_evaluations() if e.asset_key == key]
    assert len(evaluations) == 1
    return evaluations[0]


def test_error_rule_failure_blocks_downstream_asset(lake: Path, tmp_path: Path) -> None:
    result = _run(lake, _rules_file(tmp_path, "ERROR"))

    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert ORDERS in materialized
    assert DAILY not in materialized
    assert not (lake / "gold" / "daily").exists()

    evaluation = _check_evaluation(result, ORDERS)
    assert evaluation.passed is False
    assert evaluation.severity == AssetCheckSeverity.ERROR
    assert evaluation.metadata["failed_rules"].value == ["not_null:customer_id"]
    assert evaluation.metadata["row_count"].value == 3

    stored = DeltaTable(str(lake / "quality" / "results")).to_pyarrow_table().to_pylist()
    by_rule = {(r["rule_type"], r["column_name"]): r for r in stored}
    assert by_rule[("NOT_NULL", "customer_id")]["passed"] is False
    assert by_rule[("NOT_NULL", "customer_id")]["unexpected_count"] == 1
    assert by_rule[("UNIQUE", "order_id")]["passed"] is True
    assert by_rule[("READABLE", None)]["row_count"] == 3
    assert {r["run_id"] for r in stored} == {result.run_id}

    # the suite is also an OpenLineage run reading the table, with the rules as its quality assertions
    (start, complete) = [e for e in _lineage_events(lake) if e["job"]["name"] == "silver.orders.gx_suite"]
    assert (start["eventType"], complete["eventType"]) == ("START", "COMPLETE")
    assert complete["run"]["facets"]["parent"]["run"]["runId"] == result.run_id
    (table,) = complete["inputs"]
    assert table["name"] == str((lake / "silver" / "orders").resolve())
    assertions = {(a["assertion"], a.get("column")): a for a in table["inputFacets"]["dataQualityAssertions"]["assertions"]}
    assert (assertions[("not_null", "customer_id")]["success"], assertions[("unique", "order_id")]["success"]) == (False, True)
    assert assertions[("not_null", "customer_id")]["severity"] == "error"
    assert table["inputFacets"]["dataQualityMetrics"]["rowCount"] == 3


def test_warning_rule_failure_does_not_block(lake: Path, tmp_path: Path) -> None:
    result = _run(lake, _rules_file(tmp_path, "WARNING"))

    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert materialized == {ORDERS, DAILY}
    evaluation = _check_evaluation(result, ORDERS)
    assert evaluation.passed is False
    assert evaluation.severity == AssetCheckSeverity.WARN
    # the asset without rules is still checked: its table exists and is readable
    assert _check_evaluation(result, DAILY).passed is True


def test_missing_table_fails_readable_rule_with_error_severity(lake: Path) -> None:
    from quality.checks import check_result_for
    from quality.run import run_suite

    outcome = run_suite("silver.never_written", [], load_settings())
    assert not outcome.passed and outcome.blocks_downstream
    assert "does not exist" in outcome.rules[0].details["error"]
    result = check_result_for(outcome, results_table="x")
    assert result.severity == AssetCheckSeverity.ERROR


def _append_one_result(lake_root: str, table: str, barrier) -> None:
    from datetime import UTC, datetime

    from pipelines.settings import load_settings
    from quality.results import SuiteOutcome, append_results, result_rows

    settings = load_settings()
    rows = result_rows(SuiteOutcome(table, [], None, 0.0, datetime.now(UTC), error="x"), run_id="r", check_name="gx_suite")
    barrier.wait()
    append_results(settings, rows)


def test_checks_finishing_at_once_all_store_their_results_in_a_new_table(lake: Path) -> None:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(6)
    processes = [context.Process(target=_append_one_result, args=(str(lake), f"silver.t{n}", barrier)) for n in range(6)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    assert [p.exitcode for p in processes] == [0] * 6
    stored = DeltaTable(str(lake / "quality" / "results")).to_pyarrow_table().column("table_name").to_pylist()
    assert sorted(stored) == [f"silver.t{n}" for n in range(6)]
