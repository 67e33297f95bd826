"""`lakehouse status`: how far bronze is behind each topic, when each asset last materialized, which
blocking checks fail, and what the last 24 h put aside. Against librdkafka's in-process mock cluster and
a Dagster instance in a temporary DAGSTER_HOME; the truth is what the test produced and recorded."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from pipelines.cdc.ingest import CDC_STREAMS, ingest_topic, topic_for
from pipelines.status import UNHEALTHY, AssetHealth, _problems, kafka_lag
from tests.unit.test_cdc_ingest import _produce, mock_kafka, settings  # noqa: F401 (fixtures)

LAKEHOUSE = str(Path(sys.executable).parent / "lakehouse")
ORDERS = "shop.public.orders"
EMAIL = "jane.doe@example.com"


def test_lag_is_what_each_partition_holds_beyond_bronzes_committed_offsets(mock_kafka, settings):
    producer, _ = mock_kafka
    _produce(producer, ORDERS, 10)  # record i goes to partition i % 2 of the mock's four
    assert kafka_lag(settings, [ORDERS, "shop.public.nothing"]) == {ORDERS: {0: 5, 1: 5, 2: 0, 3: 0}, "shop.public.nothing": None}
    ingest_topic(settings, ORDERS)
    _produce(producer, ORDERS, 7, start=10)
    assert kafka_lag(settings, [ORDERS]) == {ORDERS: {0: 4, 1: 3, 2: 0, 3: 0}}


def _lakehouse(env, *args):
    return subprocess.run([LAKEHOUSE, *args], env=env, capture_output=True, text=True, timeout=600)


def test_status_reports_lag_runs_failed_checks_and_rows_put_aside(mock_kafka, settings, tmp_path, monkeypatch):
    producer, bootstrap = mock_kafka
    for stream in CDC_STREAMS:
        if stream != "orders":
            producer.produce(topic_for(settings, stream), value=b"{}", partition=0)
    _produce(producer, ORDERS, 20, poison_every=10)  # offsets 0 and 10 do not decode: quarantined
    producer.produce(ORDERS, value=f"not json, mentions {EMAIL}".encode(), partition=1)
    producer.flush(10)
    env = {**os.environ, "LAKEHOUSE_DATA_DIR": str(tmp_path), "LAKEHOUSE_KAFKA_BOOTSTRAP": bootstrap,
           "LAKEHOUSE_S3_ENDPOINT_URL": "http://127.0.0.1:1", "DAGSTER_HOME": str(tmp_path / "dagster")}
    env.pop("LAKEHOUSE_CONFIG", None)
    run = _lakehouse(env, "materialize", "--select", "bronze/cdc_orders")
    assert run.returncode == 0, run.stderr[-3000:]
    _produce(producer, ORDERS, 5, start=20)  # arrived after the run

    done = _lakehouse(env, "status", "--json")
    assert done.returncode == UNHEALTHY, done.stderr
    status = json.loads(done.stdout)
    assert sum(status["kafka_lag"][ORDERS].values()) == 5
    assert sum(status["kafka_lag"][topic_for(settings, "customers")].values()) == 1  # never ingested
    assert status["quarantined_24h"] == 3 and status["rejected_24h"] == 0
    orders = status["assets"]["bronze/cdc_orders"]
    assert orders["last_materialized"] is not None and orders["failed_error_checks"] == []
    assert status["assets"]["gold/fct_orders"]["last_materialized"] is None
    assert any(p.startswith("40 of 41 assets never materialized") for p in status["problems"])
    assert EMAIL not in done.stdout + done.stderr

    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    with dg.DagsterInstance.get() as instance:
        latest = instance.get_latest_materialization_event(dg.AssetKey(["bronze", "cdc_orders"]))
        assert latest.asset_materialization.metadata["kafka_lag_records"].value == 0
        # a check that fails with ERROR severity, as a quality suite reports it
        instance.report_runless_asset_event(dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey(["bronze", "cdc_orders"]), check_name="gx_suite", passed=False,
            severity=dg.AssetCheckSeverity.ERROR))

    strict = {**env, "LAKEHOUSE_STATUS_MAX_KAFKA_LAG": "4", "LAKEHOUSE_STATUS_STALE_AFTER_HOURS": "0"}
    done = _lakehouse(strict, "status")
    assert done.returncode == UNHEALTHY, done.stderr
    assert f"{ORDERS}: bronze is 5 records behind (status_max_kafka_lag 4)" in done.stdout
    assert "bronze/cdc_orders: blocked, its children do not run while gx_suite fails (ERROR)" in done.stdout
    assert "1 assets stale, not materialized for 0 h (status_stale_after_hours): bronze/cdc_orders" in done.stdout
    assert "3 records quarantined" in done.stdout


def test_a_lake_within_its_thresholds_has_no_problem(settings):
    now = datetime.now(UTC)
    assets = {"gold/fct_orders": AssetHealth(last_materialized=now.isoformat(), failed_warning_checks=["gx_suite"])}
    assert _problems(settings, {ORDERS: {0: settings.status_max_kafka_lag}}, None, assets, now) == []


def test_kafka_that_does_not_answer_is_a_problem_not_a_crash(tmp_path):
    env = {**os.environ, "LAKEHOUSE_DATA_DIR": str(tmp_path), "LAKEHOUSE_KAFKA_BOOTSTRAP": "127.0.0.1:1",
           "DAGSTER_HOME": str(tmp_path / "dagster")}
    env.pop("LAKEHOUSE_CONFIG", None)
    done = _lakehouse(env, "status")
    assert done.returncode == UNHEALTHY and "Traceback" not in done.stderr
    assert "Kafka 127.0.0.1:1: no answer" in done.stdout
    assert "Kafka at 127.0.0.1:1 does not answer" in done.stdout
