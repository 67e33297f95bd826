"""Column lineage of a SQL query: for each output column, the table columns it is computed from.

dbt does not record which input columns feed an output column, so we read it from the model's compiled
SQL with sqlglot's lineage (DuckDB dialect), given the columns of every table the query reads. Columns
computed from no table column (a count, a literal) have no entry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import sqlglot
from sqlglot import exp
from sqlglot.lineage import lineage

# (schema, table) as the query names it, e.g. ("silver", "stg_shop__orders")
TableName = tuple[str, str]


def tables_read(sql: str) -> set[TableName]:
    return {(table.db, table.name) for table in sqlglot.parse_one(sql, dialect="duckdb").find_all(exp.Table) if table.db}


def column_sources(
    sql: str, output_columns: Sequence[str], table_columns: Mapping[TableName, Sequence[str]]
) -> dict[str, list[tuple[TableName, str]]]:
    """{output column: [((schema, table), column), ...]} for the columns of `output_columns` the query
    computes from columns of the tables in `table_columns` (the columns each of them has)."""
    schema: dict[str, dict[str, dict[str, str]]] = {}
    for (db, table), columns in table_columns.items():
        schema.setdefault(db, {})[table] = {column: "unknown" for column in columns}
    tree = sqlglot.parse_one(sql, dialect="duckdb")
    sources: dict[str, list[tuple[TableName, str]]] = {}
    for column in output_columns:
        found = []
        for node in lineage(column, tree, schema=schema, dialect="duckdb").walk():
            if node.downstream or not isinstance(node.source, exp.Table):
                continue
            table = (node.source.db, node.source.name)
            name = node.name.rsplit(".", 1)[-1].strip('"')
            if table in table_columns and (table, name) not in found:
                found.append((table, name))
        if found:
            sources[column] = sorted(found)
    return sources
