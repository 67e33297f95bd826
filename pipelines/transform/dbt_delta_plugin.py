"""dbt-duckdb plugin that makes Delta Lake the store and DuckDB only the compute.

- On connect: load the Delta extension from its wheel (no downloads) and expose every Delta table of
  the lake as a view `<layer>.<table>` in the scratch catalog, so `source()` and `ref()` read Delta;
  bronze as of the invocation's start, so that every model reads the same bronze rows.
- `store()`: called by the `delta` materialization (dbt_project/macros/materializations/delta.sql) with
  the model's SQL as a staging view; streams its rows as Arrow batches into the Delta table at
  `<lake_root>/<layer>/<model>` in one delta-rs commit (an overwrite; for incremental runs a MERGE on
  the model's unique_key or an append), then points the model's view at it.
- SQL function `lakehouse_quality_suite(table, invocation_id)`: the table's Great Expectations suite, for
  the `gx_suite` data test every model carries (dbt_project/tests/generic/gx_suite.sql).
- SQL function `lakehouse_schema_drift(table, columns)`: how the source table's newest Debezium schema
  differs from the columns staging knows, for the `schema_drift` test (dbt_project/tests/generic/).
"""

from __future__ import annotations

import json
import os
import threading
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from dbt.adapters.duckdb.plugins import BasePlugin
from dbt.adapters.duckdb.utils import TargetConfig
from dbt_common.exceptions import DbtRuntimeError
from deltalake import DeltaTable, write_deltalake

from pipelines.cdc.schema_drift import schema_drift
from pipelines.lake import (
    LAKE_WRITER,
    point_view_at_delta,
    prepare_connection,
    quote_identifier,
    quote_literal,
    register_lake_views,
)
from pipelines.settings import load_settings
from quality.rules import load_rules

# set by the Dagster op that runs dbt: quality results are stored under the Dagster run's id
QUALITY_RUN_ID_ENV = "LAKEHOUSE_QUALITY_RUN_ID"
# dagster-dbt gives each invocation its own target path (DBT_TARGET_PATH); suite outcomes go beside its
# run_results.json for the op to report
QUALITY_OUTCOMES_DIR = "quality"
# the schema_drift tests leave their messages there too, for the op to show on the check
SCHEMA_DRIFT_DIR = "schema_drift"
# Great Expectations is not thread-safe; dbt runs tests on several threads
_ONE_SUITE_AT_A_TIME = threading.Lock()


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        self.settings = load_settings()
        self.rules = load_rules()
        self.conn: duckdb.DuckDBPyConnection | None = None

    def configure_connection(self, conn: duckdb.DuckDBPyConnection) -> None:
        prepare_connection(conn)
        # big models spill to disk; an in-memory database would otherwise spill into `.tmp` of the cwd
        conn.execute(f"set temp_directory = {quote_literal(str(self.settings.data_dir / 'duckdb_spill'))}")
        conn.execute(f"set memory_limit = '{self.settings.transform_memory_gb}GiB'")
        self.conn = conn
        # every model of the invocation reads bronze as it was when dbt started: silver.rejects and the
        # staging models take the same rows, whatever bronze commits while the models run
        register_lake_views(conn, self.settings, pinned_layers=("bronze",))
        conn.create_function("lakehouse_quality_suite", self._quality_suite, ["VARCHAR", "VARCHAR"], "VARCHAR[]",
                             side_effects=True)
        conn.create_function("lakehouse_schema_drift", self._schema_drift, ["VARCHAR", "VARCHAR[]"], "VARCHAR[]",
                             side_effects=True)

    def _schema_drift(self, table: str, columns: list[str]) -> list[str]:
        messages = schema_drift(self.settings, table, columns)
        target_path = os.environ.get("DBT_TARGET_PATH")
        if target_path:
            folder = Path(target_path) / SCHEMA_DRIFT_DIR
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{table}.json").write_text(json.dumps(messages))
        return messages

    def _quality_suite(self, table: str, invocation_id: str) -> list[str]:
        # imported on first use: Great Expectations takes ~4 s to import, which every dbt command
        # (parse, run without tests) would otherwise pay at start-up
        from quality.run import run_suite_for_dbt

        target_path = os.environ.get("DBT_TARGET_PATH")
        with _ONE_SUITE_AT_A_TIME:
            return run_suite_for_dbt(
                table, self.rules, self.settings,
                run_id=os.environ.get(QUALITY_RUN_ID_ENV) or invocation_id,
                outcome_dir=Path(target_path) / QUALITY_OUTCOMES_DIR if target_path else None,
            )

    def store(self, target_config: TargetConfig) -> None:
        assert self.conn is not None, "configure_connection was not called"
        config = target_config.config
        layer, table = config["schema"], config["alias"]
        path = self.settings.layer_path(layer, table)
        mode, flag, partition_by = config.get("mode"), config.get("delete_flag"), config.get("partition_by") or []
        cursor = self.conn.cursor()
        try:
            rows = cursor.sql(f"select * from {target_config.relation}")
            if mode in ("merge", "append", "replace_partitions"):
                # an incremental run's rows: what changed, small enough to hold, and often none at all;
                # then no commit is made (a commit costs log I/O here and in every later read)
                changes = rows.to_arrow_table()
                if changes.num_rows:
                    self._store_changes(path, mode, changes, config, flag, partition_by, table)
            else:
                if flag:
                    flag_column = quote_identifier(flag)
                    rows = rows.filter(f"not {flag_column}").select(f"* exclude ({flag_column})")
                write_deltalake(
                    path, rows.to_arrow_reader(batch_size=100_000), mode="overwrite", schema_mode="overwrite",
                    partition_by=partition_by or None, writer_properties=LAKE_WRITER,
                    storage_options=self.settings.delta_storage_options() or None,
                    # a reader replays the JSON commits since the last checkpoint: incremental runs commit
                    # every hour (or minute, in continuous mode), so checkpoint every 10 rather than 100
                    configuration={"delta.checkpointInterval": "10"},
                )
            point_view_at_delta(cursor, self.settings, layer, table)
        finally:
            cursor.close()

    def _store_changes(self, path: str, mode: str, changes: pa.Table, config: dict, flag: str | None,
                       partition_by: list[str], table: str) -> None:
        storage_options = self.settings.delta_storage_options() or None
        if mode == "merge":
            self._merge(path, changes, _key_columns(config.get("unique_key"), table), flag, partition_by)
        elif mode == "replace_partitions":
            laid_out = DeltaTable(path, storage_options=storage_options).metadata().partition_columns
            if laid_out != partition_by:
                raise DbtRuntimeError(
                    f"the Delta table of {table} ({path}) is partitioned by {laid_out or 'nothing'}, the model by {partition_by}: "
                    f"a lake built by an earlier version; rebuild it once with "
                    f"`dbt build --full-refresh --select {table}+`")
            # every partition a row names is rebuilt from the rows given; flagged rows only name a partition
            # that is left empty
            replaced = partitions_predicate(changes, partition_by)
            kept = changes.filter(pc.invert(changes[flag])).drop_columns([flag]) if flag else changes
            write_deltalake(path, kept, mode="overwrite", predicate=replaced, partition_by=partition_by,
                            writer_properties=LAKE_WRITER, storage_options=storage_options)
        else:
            write_deltalake(path, changes, mode="append", schema_mode="merge", writer_properties=LAKE_WRITER,
                            storage_options=storage_options)

    def _merge(self, path: str, changes: pa.Table, keys: list[str], flag: str | None, partition_by: list[str]) -> None:
        """One Delta commit: matched keys are updated (or deleted when flagged), new keys inserted. When the
        key holds the partition columns, only the partitions the changes name are read and rewritten."""
        table = DeltaTable(path, storage_options=self.settings.delta_storage_options() or None)
        pruned = [c for c in partition_by if c in keys]
        # a partition value may be null (a version without a commit time): null-safe equality for those
        predicate = " and ".join(
            f"(t.{quote_identifier(k)} is not distinct from s.{quote_identifier(k)})" if k in pruned
            else f"t.{quote_identifier(k)} = s.{quote_identifier(k)}" for k in keys)
        if pruned:
            # a literal target-side term: delta-rs skips the other partitions' files before it joins
            predicate += " and " + partitions_predicate(changes, pruned, alias="t")
        merge = table.merge(
            source=changes,
            predicate=predicate,
            source_alias="s",
            target_alias="t",
            merge_schema=True,
            writer_properties=LAKE_WRITER,
            streamed_exec=False,
        )
        if flag:
            flagged = f"s.{quote_identifier(flag)}"
            merge = (
                merge.when_matched_delete(predicate=flagged)
                .when_matched_update_all(predicate=f"not {flagged}", except_cols=[flag])
                .when_not_matched_insert_all(predicate=f"not {flagged}", except_cols=[flag])
            )
        else:
            merge = merge.when_matched_update_all().when_not_matched_insert_all()
        merge.execute()


def partitions_predicate(rows: pa.Table, columns: list[str], alias: str | None = None) -> str:
    """A delta-rs SQL predicate that holds exactly for the partitions (values of `columns`) `rows` name."""
    names = [f"{alias}.{quote_identifier(c)}" if alias else quote_identifier(c) for c in columns]
    terms = []
    for values in rows.select(columns).group_by(columns).aggregate([]).to_pylist():
        terms.append(" and ".join(_equals(name, values[c]) for name, c in zip(names, columns)))
    return "(" + " or ".join(f"({t})" for t in terms) + ")"


def _equals(name: str, value: object) -> str:
    if value is None:
        return f"{name} is null"
    if isinstance(value, bool):
        return f"{name} = {str(value).lower()}"
    if isinstance(value, date) and not isinstance(value, datetime):
        return f"{name} = cast({quote_literal(value.isoformat())} as date)"
    if isinstance(value, (int, float)):
        return f"{name} = {value}"
    return f"{name} = {quote_literal(str(value))}"


def _key_columns(unique_key: str | list[str] | None, table: str) -> list[str]:
    if not unique_key:
        raise ValueError(f"model {table}: incremental_strategy='merge' needs a unique_key")
    return [unique_key] if isinstance(unique_key, str) else list(unique_key)

