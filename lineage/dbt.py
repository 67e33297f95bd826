"""OpenLineage runs for dbt models, driven by dbt's own structured log events.

dbt logs `LogStartLine` when a model begins and `LogModelResult` when it ends (both at info level, so
they reach dagster-dbt); we send START and COMPLETE or FAIL at those moments, with the model's Delta
inputs and output, the output's schema and row count read from the Delta log once it is committed, and
its column lineage read from the SQL dbt compiled (lineage/sql_columns.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pyarrow as pa

from lineage.emitter import LineageEmitter, LineageRun
from lineage.facets import DatasetId, dataset_for_delta_path
from lineage.sql_columns import column_sources

log = logging.getLogger(__name__)


class DbtModelFailed(Exception):
    """Raised inside a model's lineage run to mark it FAIL; never escapes `DbtLineageTracker`."""


class DbtLineageTracker:
    def __init__(
        self,
        emitter: LineageEmitter,
        manifest: Mapping[str, Any],
        path_for: Callable[[str, str], str],
        table_stats: Callable[[str], tuple[int, pa.Schema]],
        parent: tuple[str, str],
        target_path: Path,
    ) -> None:
        """`path_for(layer, table)` gives a Delta path; `table_stats(path)` its row count and schema;
        `target_path` is the invocation's, where dbt writes each model's compiled SQL."""
        self.emitter = emitter
        self.manifest = manifest
        self.path_for = path_for
        self.table_stats = table_stats
        self.parent = parent
        self.target_path = target_path
        self._open: dict[str, tuple[ExitStack, LineageRun, DatasetId, str, dict[tuple[str, str], str]]] = {}

    @staticmethod
    def _relation(node: Mapping[str, Any]) -> tuple[str, str]:
        """(layer, table) of a model or source: a model's table is its alias when it has one."""
        name = node["name"] if node["resource_type"] == "source" else node.get("alias") or node["name"]
        return node["schema"], name

    def _inputs(self, node: Mapping[str, Any]) -> dict[tuple[str, str], str]:
        """The Delta path of each model and source the node reads, by (layer, table)."""
        inputs = {}
        for upstream in node.get("depends_on", {}).get("nodes", []):
            parent = self.manifest["nodes"].get(upstream) or self.manifest["sources"].get(upstream)
            if parent and parent["resource_type"] in ("model", "source"):
                relation = self._relation(parent)
                inputs[relation] = self.path_for(*relation)
        return inputs

    def observe(self, raw_event: Mapping[str, Any]) -> None:
        name = raw_event.get("info", {}).get("name")
        node_info = raw_event.get("data", {}).get("node_info", {})
        unique_id = node_info.get("unique_id", "")
        if not unique_id.startswith("model.") or name not in ("LogStartLine", "LogModelResult"):
            return
        if name == "LogStartLine":
            self._start(unique_id)
        else:
            self._finish(unique_id, node_info.get("node_status"))

    def _start(self, unique_id: str) -> None:
        node = self.manifest["nodes"][unique_id]
        path = self.path_for(*self._relation(node))
        output = dataset_for_delta_path(path)
        inputs = self._inputs(node)
        stack = ExitStack()
        run = stack.enter_context(
            self.emitter.run(
                f"dbt.{node['schema']}.{node['name']}",
                inputs=[dataset_for_delta_path(p) for p in inputs.values()],
                outputs=[output],
                parent=self.parent,
            )
        )
        self._open[unique_id] = (stack, run, output, path, inputs)

    def _finish(self, unique_id: str, status: str | None) -> None:
        if unique_id not in self._open:
            return
        stack, run, output, path, inputs = self._open.pop(unique_id)
        if status == "success":
            row_count, schema = self.table_stats(path)
            run.set_output_stats(output, row_count=row_count, schema=schema)
            sources = self._column_lineage(unique_id, schema.names, inputs)
            if sources:
                run.set_column_lineage(output, sources)
            stack.close()
            return
        try:
            with stack:
                raise DbtModelFailed(f"dbt model {unique_id} finished with status {status}")
        except DbtModelFailed:
            pass

    def _column_lineage(
        self, unique_id: str, columns: list[str], inputs: dict[tuple[str, str], str]
    ) -> dict[str, list[tuple[str, str, str]]]:
        """{output column: [(input namespace, input name, input column)]}; empty when the SQL cannot be
        read or analysed (lineage must never fail a model)."""
        node = self.manifest["nodes"][unique_id]
        compiled = self.target_path / "compiled" / node["package_name"] / node["original_file_path"]
        try:
            table_columns = {table: self.table_stats(path)[1].names for table, path in inputs.items()}
            # an incremental model also reads itself (its watermark): sqlglot must know those columns too
            table_columns[self._relation(node)] = columns
            found = column_sources(compiled.read_text(), columns, table_columns)
        except Exception:
            log.warning("no column lineage for %s", unique_id, exc_info=True)
            return {}
        datasets = {table: dataset_for_delta_path(path) for table, path in inputs.items()}
        lineage = {
            column: [(datasets[table].namespace, datasets[table].name, source)
                     for table, source in sources if table in datasets]
            for column, sources in found.items()
        }
        return {column: sources for column, sources in lineage.items() if sources}

    def close(self) -> None:
        """Models still open when dbt stops (killed, crashed) end as FAIL."""
        for unique_id in list(self._open):
            self._finish(unique_id, "interrupted")

