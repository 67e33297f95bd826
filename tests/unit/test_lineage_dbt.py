"""dbt log events → OpenLineage START / COMPLETE / FAIL per model."""

import json

import pyarrow as pa
from openlineage.client import OpenLineageClient
from openlineage.client.transport.file import FileConfig, FileTransport

from lineage.dbt import DbtLineageTracker
from lineage.emitter import LineageEmitter

MANIFEST = {
    "nodes": {
        "model.lakehouse.int_x": {
            "resource_type": "model", "name": "int_x", "schema": "silver", "package_name": "lakehouse",
            "original_file_path": "models/int_x.sql", "depends_on": {"nodes": ["source.lakehouse.shop.cdc_x"]},
        },
        "model.lakehouse.agg_x": {
            "resource_type": "model", "name": "agg_x", "schema": "gold", "package_name": "lakehouse",
            "original_file_path": "models/agg_x.sql", "depends_on": {"nodes": ["model.lakehouse.int_x"]},
        },
    },
    "sources": {"source.lakehouse.shop.cdc_x": {"resource_type": "source", "name": "cdc_x", "schema": "bronze"}},
}


def _log(name, unique_id, status):
    return {"info": {"name": name}, "data": {"node_info": {"unique_id": unique_id, "node_status": status}}}


def _tracker(tmp_path):
    path = tmp_path / "lineage.jsonl"
    emitter = LineageEmitter(OpenLineageClient(transport=FileTransport(FileConfig(log_file_path=str(path), append=True))))
    schemas = {"/lake/bronze/cdc_x": pa.schema([("after", pa.string()), ("lsn", pa.string())]),
               "/lake/silver/int_x": pa.schema([("id", pa.int64()), ("lsn", pa.decimal128(20, 0)), ("n", pa.int64())])}
    compiled = tmp_path / "target" / "compiled" / "lakehouse" / "models" / "int_x.sql"
    compiled.parent.mkdir(parents=True)
    # as an incremental run compiles it: the model reads its own table for its watermark
    compiled.write_text('with source as (select * from "memory"."bronze"."cdc_x"\n'
                        '    where lsn > (select max(lsn) from "memory"."silver"."int_x"))\n'
                        "select cast(after ->> 'id' as bigint) as id, cast(lsn as decimal(20, 0)) as lsn, 1 as n from source")
    tracker = DbtLineageTracker(
        emitter, MANIFEST, path_for=lambda layer, table: f"/lake/{layer}/{table}",
        table_stats=lambda p: (7, schemas[p]), parent=("job", "00000000-0000-0000-0000-000000000001"),
        target_path=tmp_path / "target",
    )
    return tracker, path


def _events(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_successful_model_sends_start_then_complete_with_its_delta_inputs_and_row_count(tmp_path):
    tracker, path = _tracker(tmp_path)
    tracker.observe(_log("LogStartLine", "model.lakehouse.int_x", "started"))
    tracker.observe(_log("LogModelResult", "model.lakehouse.int_x", "success"))
    start, complete = _events(path)
    assert (start["eventType"], complete["eventType"]) == ("START", "COMPLETE")
    assert start["job"]["name"] == "dbt.silver.int_x"
    assert [i["name"] for i in start["inputs"]] == ["/lake/bronze/cdc_x"]
    assert complete["outputs"][0]["name"] == "/lake/silver/int_x"
    assert complete["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 7
    # column lineage from the compiled SQL: columns computed from no input column have none
    fields = complete["outputs"][0]["facets"]["columnLineage"]["fields"]
    assert {column: [(f["name"], f["field"]) for f in field["inputFields"]] for column, field in fields.items()} == {
        "id": [("/lake/bronze/cdc_x", "after")], "lsn": [("/lake/bronze/cdc_x", "lsn")]}


def test_failed_and_interrupted_models_send_fail(tmp_path):
    tracker, path = _tracker(tmp_path)
    tracker.observe(_log("LogStartLine", "model.lakehouse.int_x", "started"))
    tracker.observe(_log("LogStartLine", "model.lakehouse.agg_x", "started"))
    tracker.observe(_log("LogModelResult", "model.lakehouse.int_x", "error"))
    tracker.close()
    states = [(e["job"]["name"], e["eventType"]) for e in _events(path)]
    assert states == [
        ("dbt.silver.int_x", "START"),
        ("dbt.gold.agg_x", "START"),
        ("dbt.silver.int_x", "FAIL"),
        ("dbt.gold.agg_x", "FAIL"),
    ]


def test_tests_and_other_nodes_send_nothing(tmp_path):
    tracker, path = _tracker(tmp_path)
    tracker.observe(_log("LogStartLine", "test.lakehouse.unique_x", "started"))
    tracker.observe({"info": {"name": "MainReportVersion"}, "data": {}})
    assert not path.exists() or _events(path) == []
