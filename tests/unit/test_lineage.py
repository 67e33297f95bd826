"""OpenLineage emission to a JSONL file: START then COMPLETE/FAIL, facets that parse back, config precedence."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from openlineage.client import OpenLineageClient
from openlineage.client.transport import HttpTransport
from openlineage.client.transport.file import FileConfig, FileTransport

from lineage.client import LineageConfigError, build_transport, lineage_namespace
from lineage.emitter import LineageEmitter, LineageResource
from lineage.facets import (
    QualityAssertion,
    dataset_for_delta_path,
    dataset_for_kafka_topic,
    dataset_for_postgres_table,
    dataset_for_s3_object,
)
from pipelines.settings import load_settings

SCHEMA = pa.schema([("order_id", pa.string()), ("total_amount", pa.decimal128(12, 2)), ("status", pa.string())])


def _emitter(path: Path, namespace: str = "lakehouse") -> LineageEmitter:
    client = OpenLineageClient(transport=FileTransport(FileConfig(log_file_path=str(path), append=True)))
    return LineageEmitter(client, namespace)


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_run_emits_start_then_complete_with_schema_stats_and_column_lineage(tmp_path: Path) -> None:
    events_file = tmp_path / "events.jsonl"
    bronze = dataset_for_delta_path(tmp_path / "lake" / "bronze" / "cdc_orders")
    silver = dataset_for_delta_path(tmp_path / "lake" / "silver" / "stg_shop__orders")
    with _emitter(events_file).run("silver.stg_shop__orders", inputs=[bronze], outputs=[silver]) as run:
        run.set_output_stats(silver, row_count=42, schema=SCHEMA, size_bytes=1234)
        run.set_column_lineage(silver, {"order_id": [(bronze.namespace, bronze.name, "after")]})
        run.add_quality(silver, [QualityAssertion("not_null", True, column="order_id", severity="error")], row_count=42)

    start, complete = _events(events_file)
    assert (start["eventType"], complete["eventType"]) == ("START", "COMPLETE")
    assert start["run"]["runId"] == complete["run"]["runId"]
    assert start["job"] == complete["job"] == {"namespace": "lakehouse", "name": "silver.stg_shop__orders", "facets": {}}
    assert complete["inputs"][0]["namespace"] == "file"
    assert complete["inputs"][0]["name"] == str((tmp_path / "lake" / "bronze" / "cdc_orders").resolve())

    output = complete["outputs"][0]
    assert [(f["name"], f["type"]) for f in output["facets"]["schema"]["fields"]] == [
        ("order_id", "string"), ("total_amount", "decimal128(12, 2)"), ("status", "string")]
    assert output["outputFacets"]["outputStatistics"]["rowCount"] == 42
    assert output["outputFacets"]["outputStatistics"]["size"] == 1234
    lineage = output["facets"]["columnLineage"]["fields"]["order_id"]["inputFields"]
    assert lineage == [{"namespace": "file", "name": bronze.name, "field": "after", "transformations": []}]
    assertion = output["facets"]["dataQualityAssertions"]["assertions"][0]
    assert (assertion["assertion"], assertion["success"], assertion["column"]) == ("not_null", True, "order_id")
    assert output["facets"]["dataQualityMetrics"]["rowCount"] == 42
    for facet in [*output["facets"].values(), *output["outputFacets"].values()]:
        assert facet["_schemaURL"].startswith("https://openlineage.io/spec/facets/")
        assert facet["_producer"] == complete["producer"]
    assert "schema" not in start["outputs"][0].get("facets", {})


def test_exception_emits_fail_with_error_message_and_reraises(tmp_path: Path) -> None:
    events_file = tmp_path / "events.jsonl"
    out = dataset_for_delta_path(tmp_path / "gold" / "x")
    with pytest.raises(ZeroDivisionError):
        with _emitter(events_file).run("gold.x", outputs=[out], run_id="01890a5d-ac96-774b-bcce-b302099a8057"):
            1 / 0
    start, fail = _events(events_file)
    assert (start["eventType"], fail["eventType"]) == ("START", "FAIL")
    assert start["run"]["runId"] == fail["run"]["runId"] == "01890a5d-ac96-774b-bcce-b302099a8057"
    error = fail["run"]["facets"]["errorMessage"]
    assert error["message"] == "ZeroDivisionError: division by zero"
    assert error["programmingLanguage"] == "python"
    assert "1 / 0" in error["stackTrace"]


def test_unknown_dataset_in_handle_is_rejected(tmp_path: Path) -> None:
    with _emitter(tmp_path / "e.jsonl").run("j", outputs=[dataset_for_delta_path("/a")]) as run:
        with pytest.raises(ValueError, match="not one of this run's outputs"):
            run.set_output_stats(dataset_for_delta_path("/b"), 1)


def test_dataset_naming_follows_the_openlineage_spec() -> None:
    assert dataset_for_kafka_topic("127.0.0.1:9092,other:9093", "shop.public.orders") == (
        dataset_for_kafka_topic("127.0.0.1:9092", "shop.public.orders"))
    kafka = dataset_for_kafka_topic("127.0.0.1:9092", "shop.public.orders")
    assert (kafka.namespace, kafka.name) == ("kafka://127.0.0.1:9092", "shop.public.orders")
    s3 = dataset_for_s3_object("lakehouse-raw", "raw/events/year=2026/a.jsonl")
    assert (s3.namespace, s3.name) == ("s3://lakehouse-raw", "raw/events/year=2026/a.jsonl")
    delta_s3 = dataset_for_delta_path("s3://bucket/lake/gold/agg_daily_sales/")
    assert (delta_s3.namespace, delta_s3.name) == ("s3://bucket", "lake/gold/agg_daily_sales")
    pg = dataset_for_postgres_table("postgresql://postgres@127.0.0.1:5433/shop", "public", "orders")
    assert (pg.namespace, pg.name) == ("postgres://127.0.0.1:5433", "shop.public.orders")
    local = dataset_for_delta_path("/tmp/lake/../lake/silver/x")
    assert (local.namespace, local.name) == ("file", "/tmp/lake/silver/x")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key in ("OPENLINEAGE_CONFIG", "OPENLINEAGE_URL", "OPENLINEAGE_DISABLED", "OPENLINEAGE_NAMESPACE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr("lineage.client.PROJECT_DIR", tmp_path / "project")
    (tmp_path / "empty.yaml").write_text("")  # whatever lakehouse.yaml the project directory may have
    return {"LAKEHOUSE_DATA_DIR": str(tmp_path / "data"), "LAKEHOUSE_CONFIG": str(tmp_path / "empty.yaml")}


def test_default_transport_appends_jsonl_to_settings_lineage_file(env: dict[str, str]) -> None:
    settings = load_settings(env)
    transport = build_transport(settings, env)
    assert isinstance(transport, FileTransport)
    assert transport.config.append is True
    assert transport.config.log_file_path == str(settings.lineage_file)
    assert settings.lineage_file.parent.is_dir()


def test_openlineage_url_gives_http_transport(env: dict[str, str]) -> None:
    transport = build_transport(load_settings(env), {**env, "OPENLINEAGE_URL": "http://marquez:5000"})
    assert isinstance(transport, HttpTransport)
    assert transport.url == "http://marquez:5000"


def test_config_file_wins_over_url(env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "ol.yml"
    config.write_text(f"transport:\n  type: file\n  log_file_path: {tmp_path}/from_yaml/ev.jsonl\n  append: true\n")
    transport = build_transport(load_settings(env), {**env, "OPENLINEAGE_CONFIG": str(config), "OPENLINEAGE_URL": "http://x"})
    assert isinstance(transport, FileTransport)
    assert transport.config.log_file_path == f"{tmp_path}/from_yaml/ev.jsonl"

    project_config = tmp_path / "project" / "openlineage.yml"
    project_config.parent.mkdir()
    project_config.write_text("transport:\n  type: http\n  url: http://from-project:5000\n")
    assert isinstance(build_transport(load_settings(env), {**env, "OPENLINEAGE_URL": "http://x"}), HttpTransport)

    config.write_text("transport: {}\n")
    with pytest.raises(LineageConfigError, match="expected `transport:`"):
        build_transport(load_settings(env), {**env, "OPENLINEAGE_CONFIG": str(config)})


def test_namespace_defaults_to_lakehouse_and_env_overrides() -> None:
    assert lineage_namespace({}) == "lakehouse"
    assert lineage_namespace({"OPENLINEAGE_NAMESPACE": "prod"}) == "prod"


def test_resource_writes_to_its_file(tmp_path: Path) -> None:
    resource = LineageResource(namespace="test", lineage_file=str(tmp_path / "l" / "e.jsonl"))
    with resource.run("bronze.cdc_orders", inputs=[dataset_for_kafka_topic("h:9092", "shop.public.orders")]):
        pass
    events = _events(tmp_path / "l" / "e.jsonl")
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    assert events[0]["job"]["namespace"] == "test"
    assert events[0]["inputs"][0]["namespace"] == "kafka://h:9092"
