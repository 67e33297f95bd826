"""Great Expectations on DuckDB: validate a suite where the data is, in SQL over `delta_scan(...)`.

GX 1.24's SQL execution engine opens a pooled connection per query and closes it before GX calls
`fetchall()`; for dialects it does not know (duckdb is one), that discards DuckDB's pending result and
every metric fails with `IndexError: list index out of range` (a StaticPool does not help: returning the
connection to the pool resets it). GX already keeps one persistent connection for sqlite, mssql,
bigquery and databricks; `DuckDBExecutionEngine` does the same for duckdb by overriding the public
`get_connection` hook, and `LakeDuckDBDatasource` is a fluent datasource type (registered by GX's
datasource metaclass as `context.data_sources.add_lakehouse_duckdb`) that uses it. No GX internals are
patched. The SQLAlchemy dialect is duckdb-engine.

Every DuckDB connection GX opens runs `init_sql` first (load the Delta/httpfs extensions from their pip
wheels — never downloaded — pin the session time zone to UTC, create S3 secrets), via a SQLAlchemy
`connect` event, because GX builds its engines itself from the datasource's fields.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, List, Literal, Type

import great_expectations as gx
import sqlalchemy
from great_expectations.core import ExpectationSuiteValidationResult
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.datasource.fluent import SQLDatasource
from great_expectations.execution_engine import SqlAlchemyExecutionEngine

from pipelines.lake import DELTA_EXTENSION, HTTPFS_EXTENSION

_CONNECT_ARGS = {"config": {"autoinstall_known_extensions": False, "autoload_known_extensions": False}}


def lake_init_sql(extra: Sequence[str] = ()) -> list[str]:
    """Statements every validation connection runs: offline extensions, UTC, then `extra` (secrets)."""
    return [f"LOAD '{DELTA_EXTENSION}'", f"LOAD '{HTTPFS_EXTENSION}'", "SET TimeZone = 'UTC'", *extra]


def _run_on_connect(engine: sqlalchemy.Engine, init_sql: Sequence[str]) -> None:
    statements = list(init_sql)

    @sqlalchemy.event.listens_for(engine, "connect")
    def _init(dbapi_connection: Any, _record: Any) -> None:
        for statement in statements:
            dbapi_connection.execute(statement)


class DuckDBExecutionEngine(SqlAlchemyExecutionEngine):
    """GX's SQLAlchemy engine, holding one DuckDB connection for its lifetime."""

    def __init__(self, *args: Any, init_sql: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _run_on_connect(self.engine, init_sql)

    @contextmanager
    def get_connection(self) -> Iterator[sqlalchemy.Connection]:
        if self._connection is None or self._connection.closed:
            self._connection = self.engine.connect()
        yield self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self.engine.dispose()


class LakeDuckDBDatasource(SQLDatasource):
    """A GX SQL datasource on an in-memory DuckDB that reads the lake through `delta_scan`."""

    type: Literal["lakehouse_duckdb"] = "lakehouse_duckdb"  # type: ignore[assignment]
    init_sql: List[str] = []

    @property
    def execution_engine_type(self) -> Type[SqlAlchemyExecutionEngine]:
        return DuckDBExecutionEngine

    def _create_engine(self) -> sqlalchemy.Engine:
        engine = super()._create_engine()
        _run_on_connect(engine, self.init_sql)
        return engine


_names = itertools.count()
_names_lock = threading.Lock()


def validate_table(
    table_sql: str,
    suite: gx.ExpectationSuite,
    *,
    init_sql: Sequence[str] | None = None,
    result_format: str = "SUMMARY",
) -> ExpectationSuiteValidationResult:
    """Run `suite` against the rows of `table_sql` (e.g. `delta_scan('<path>')`) inside DuckDB.

    Only aggregates and the few sample values GX asks for (`partial_unexpected_list`) leave DuckDB.
    Each call uses its own ephemeral GX context and DuckDB connection, so calls may run in parallel
    threads or processes.
    """
    with _names_lock:
        name = f"lake_{os.getpid()}_{next(_names)}"
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    datasource = context.data_sources.add_lakehouse_duckdb(
        name=name,
        connection_string="duckdb:///:memory:",
        kwargs={"connect_args": _CONNECT_ARGS},
        init_sql=lake_init_sql() if init_sql is None else list(init_sql),
    )
    asset = datasource.add_query_asset(name="table", query=f"SELECT * FROM {table_sql}")
    batch_definition = asset.add_batch_definition_whole_table("whole_table")
    try:
        batch = batch_definition.get_batch()
        return batch.validate(suite, result_format=result_format)
    finally:
        datasource.get_execution_engine().close()
        datasource.get_engine().dispose()
