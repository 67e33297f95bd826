"""What analysts use: a fresh in-memory DuckDB with a view per Delta table of the lake.

It never opens the pipeline's own DuckDB, and Delta readers see the last committed version, so
queries run while the pipeline writes.
"""

from __future__ import annotations

import duckdb

from pipelines import lake
from pipelines.settings import Settings


def open_lake(settings: Settings) -> duckdb.DuckDBPyConnection:
    conn = lake.connect()
    lake.register_lake_views(conn, settings)
    return conn


def run_statements(conn: duckdb.DuckDBPyConnection, sql: str, max_rows: int | None = None) -> None:
    """Runs each statement of `sql` in turn and shows each one's result (DuckDB alone returns the last)."""
    for statement in conn.extract_statements(sql):
        result = conn.sql(statement)
        if result is not None:
            result.show(max_width=200, **({"max_rows": max_rows} if max_rows is not None else {}))


def interactive_shell(settings: Settings) -> int:
    """Reads statements (ended by ';', or by the end of the input) until \\q or the end of the input;
    returns how many failed."""
    conn = lake.connect()
    names = lake.register_lake_views(conn, settings)
    print(f"lakehouse shell: {len(names)} tables ({', '.join(names) or 'none yet'}). End statements with ';', quit with \\q or Ctrl-D.")
    buffer: list[str] = []
    failures = 0
    while True:
        try:
            line = input("lake> " if not buffer else "  ... ")
        except EOFError:
            print()
            if "\n".join(buffer).strip():
                failures += _run_reporting_errors(conn, "\n".join(buffer))
            return failures
        if line.strip() in ("\\q", "quit", "exit") and not buffer:
            return failures
        buffer.append(line)
        if not line.rstrip().endswith(";"):
            continue
        sql, buffer = "\n".join(buffer), []
        failures += _run_reporting_errors(conn, sql)


def _run_reporting_errors(conn: duckdb.DuckDBPyConnection, sql: str) -> int:
    try:
        run_statements(conn, sql)
        return 0
    except duckdb.Error as exc:
        print(f"error: {exc}")
        return 1
