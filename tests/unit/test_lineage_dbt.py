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
            "resource_type": "model", "name": "int_x", "schema": "silver",
            "depends_on": {"nodes": ["source.lakehouse.shop.cdc_x"]},
        },
        "model.lakehouse.agg_x": {
            "resource_type": "model", "name": "agg_x", "schema": "gold",
            "depends_on": {"nodes": ["model.lakehouse.int_x"]},
        },
    },
    "sources": {"source.lakehouse.shop.cdc_x": {"resource_type": "source", "name": "cdc_x", "schema": "bronze"}},
}


def _log(name, unique_id, status):
    return {"info": {"name": name}, "data": {"node_info": {"unique_id": unique_id, "node_status": status}}}


def _tracker(tmp_path):
    path = tmp_path / "lineage.jsonl"
    emitter = LineageEmitter(OpenLineageClient(transport=FileTransport(FileConfig(log_file_path=str(path), append=True))))
    schema = pa.schema([("id", pa.int64())])
    tracker = DbtLineageTracker(
        emitter, MANIFEST, path_for=lambda layer, table: f"/lake/{layer}/{table}",
        table_stats=lambda p: (7, schema), parent=("job", "00000000-0000-0000-0000-000000000001"),
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
