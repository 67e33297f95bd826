"""dbt-duckdb plugin that makes Delta Lake the store and DuckDB only the compute.

- On connect: load the Delta extension from its wheel (no downloads) and expose every Delta table of
  the lake as a view `<layer>.<table>` in the scratch catalog, so `source()` and `ref()` read Delta.
- `store()`: called by the `delta` materialization (dbt_project/macros/materializations/delta.sql) with
  the model's rows in a staging table; streams them as Arrow batches into the Delta table at
  `<lake_root>/<layer>/<model>` in one delta-rs commit, then points the model's view at it.
"""

from __future__ import annotations

from typing import Any

import duckdb
from dbt.adapters.duckdb.plugins import BasePlugin
from dbt.adapters.duckdb.utils import TargetConfig
from deltalake import write_deltalake

from pipelines.lake import prepare_connection, point_view_at_delta, register_lake_views
from pipelines.settings import load_settings


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        self.settings = load_settings()
        self.conn: duckdb.DuckDBPyConnection | None = None

    def configure_connection(self, conn: duckdb.DuckDBPyConnection) -> None:
        prepare_connection(conn)
        self.conn = conn
        register_lake_views(conn, self.settings)

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
            point_view_at_delta(cursor, self.settings, layer, table)
        finally:
            cursor.close()
