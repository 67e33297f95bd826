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


def interactive_shell(settings: Settings) -> None:
    conn = lake.connect()
    names = lake.register_lake_views(conn, settings)
    print(f"lakehouse shell: {len(names)} tables ({', '.join(names) or 'none yet'}). End statements with ';', quit with \\q or Ctrl-D.")
    buffer: list[str] = []
    while True:
        try:
            line = input("lake> " if not buffer else "  ... ")
        except EOFError:
            print()
            return
        if line.strip() in ("\\q", "quit", "exit") and not buffer:
            return
        buffer.append(line)
        if not line.rstrip().endswith(";"):
            continue
        sql, buffer = "\n".join(buffer), []
        try:
            result = conn.sql(sql)
            if result is not None:
                result.show(max_width=200)
        except duckdb.Error as exc:
            print(f"error: {exc}")
