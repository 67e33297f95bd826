"""dbt-duckdb plugin that makes Delta Lake the store and DuckDB only the compute.

- On connect: load the Delta extension from its wheel (no downloads) and expose every Delta table of
  the lake as a view `<layer>.<table>` in the scratch catalog, so `source()` and `ref()` read Delta.
- `store()`: called by the `delta` materialization (dbt_project/macros/materializations/delta.sql) with
  the model's rows in a staging table; streams them as Arrow batches into the Delta table at
  `<lake_root>/<layer>/<model>` in one delta-rs commit, then points the model's view at it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
from dbt.adapters.duckdb.plugins import BasePlugin
from dbt.adapters.duckdb.utils import TargetConfig
from deltalake import write_deltalake

from pipelines.lake import delta_scan, load_lake_extensions
from pipelines.settings import load_settings

LAYERS = ("bronze", "silver", "gold")


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        self.settings = load_settings()
        self.conn: duckdb.DuckDBPyConnection | None = None

    def configure_connection(self, conn: duckdb.DuckDBPyConnection) -> None:
        load_lake_extensions(conn)
        # business days are UTC days, whatever the machine's zone
        conn.execute("set TimeZone = 'UTC'")
        self.conn = conn
        for layer in LAYERS:
            conn.execute(f"create schema if not exists {layer}")
            for table in self._delta_tables(layer):
                self._point_view_at(conn, layer, table)

    def _delta_tables(self, layer: str) -> list[str]:
        root = Path(self.settings.lake_root) / layer
        if self.settings.lake_root.startswith("s3://") or not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if (p / "_delta_log").is_dir())

    def _point_view_at(self, conn: duckdb.DuckDBPyConnection, layer: str, table: str) -> None:
        path = self.settings.layer_path(layer, table)
        existing = conn.execute(
            "select table_type from information_schema.tables where table_schema = ? and table_name = ?",
            [layer, table],
        ).fetchone()
        if existing and existing[0] != "VIEW":
            conn.execute(f"drop table {_quote(layer)}.{_quote(table)}")
        conn.execute(f"create or replace view {_quote(layer)}.{_quote(table)} as select * from {delta_scan(path)}")

    def store(self, target_config: TargetConfig) -> None:
        assert self.conn is not None, "configure_connection was not called"
        staging = target_config.relation
        layer, table = target_config.config["schema"], target_config.config["alias"]
        path = self.settings.layer_path(layer, table)
        cursor = self.conn.cursor()
        try:
            reader = cursor.sql(f"select * from {staging}").fetch_record_batch(rows_per_batch=100_000)
            write_deltalake(
                path,
                reader,
                mode="overwrite",
                schema_mode="overwrite",
                storage_options=self.settings.delta_storage_options() or None,
            )
            self._point_view_at(cursor, layer, table)
        finally:
            cursor.close()
