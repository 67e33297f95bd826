"""Opening the lake for reading: DuckDB with the Delta extension loaded from its pip wheel.

DuckDB's `INSTALL delta` downloads from the internet, which production networks and these machines
forbid; the `duckdb-extension-*` wheels carry the same binaries, so we load them by path.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import duckdb
import duckdb_extension_delta
import duckdb_extension_httpfs
from deltalake import WriterProperties

if TYPE_CHECKING:
    import pyarrow as pa

# How silver, gold and compaction write Parquet: zstd level 1 writes as fast as the default snappy and
# half the bytes (stg_events__events at 200k orders: 82 MB instead of 173 MB, bench/transform.py)
LAKE_WRITER = WriterProperties(compression="ZSTD", compression_level=1)


def extension_path(module) -> Path:
    version = duckdb.__version__
    path = Path(module.__file__).parent / "extensions" / f"v{version}"
    found = sorted(path.glob("*.duckdb_extension"))
    if not found:
        raise RuntimeError(f"no DuckDB extension for DuckDB {version} in {path}; reinstall with `make setup`")
    return found[0]


DELTA_EXTENSION = extension_path(duckdb_extension_delta)
HTTPFS_EXTENSION = extension_path(duckdb_extension_httpfs)


def prepare_connection(conn: duckdb.DuckDBPyConnection) -> None:
    """Load the lake's extensions and read times in UTC (business days are UTC days everywhere)."""
    conn.execute(f"LOAD '{DELTA_EXTENSION}'")
    conn.execute(f"LOAD '{HTTPFS_EXTENSION}'")
    # GLOBAL: cursors (dbt's threads, the dbt plugin) do not inherit a connection's own settings
    conn.execute("SET GLOBAL TimeZone = 'UTC'")


def connect(database: str = ":memory:") -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect(database, config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    prepare_connection(conn)
    return conn


LAYERS = ("bronze", "silver", "gold", "quality")


def quote_identifier(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def delta_tables(settings, layer: str) -> list[str]:
    """Names of the Delta tables of one layer of the lake (a local directory or an S3 prefix)."""
    if settings.lake_root.startswith("s3://"):
        return _s3_delta_tables(settings, layer)
    if Path(settings.lake_root).exists() and not Path(settings.lake_root).is_dir():
        from pipelines.settings import SettingsError

        raise SettingsError(f"the lake root {settings.lake_root} is not a directory")
    root = Path(settings.lake_root) / layer
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "_delta_log").is_dir())


def _s3_delta_tables(settings, layer: str) -> list[str]:
    from pipelines.s3 import s3_client

    location = urlparse(f"{settings.lake_root}/{layer}/")
    bucket, prefix = location.netloc, location.path.lstrip("/")
    client = s3_client(settings)
    names = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        for folder in page.get("CommonPrefixes", []):
            log = client.list_objects_v2(Bucket=bucket, Prefix=f"{folder['Prefix']}_delta_log/", MaxKeys=1)
            if log.get("KeyCount"):
                names.append(folder["Prefix"][len(prefix) :].rstrip("/"))
    return sorted(names)


def storage_secret_sql(settings) -> list[str]:
    """DuckDB statements that give `delta_scan` access to the lake's object store (none for a local lake)."""
    if not settings.lake_root.startswith("s3://"):
        return []
    endpoint = urlparse(settings.s3_endpoint_url)
    return [
        "CREATE OR REPLACE SECRET lake_s3 (TYPE s3, "
        f"KEY_ID {quote_literal(settings.s3_access_key_id)}, SECRET {quote_literal(settings.s3_secret_access_key)}, "
        f"REGION {quote_literal(settings.s3_region)}, ENDPOINT {quote_literal(endpoint.netloc)}, "
        f"URL_STYLE 'path', USE_SSL {'true' if endpoint.scheme == 'https' else 'false'})"
    ]


def point_view_at_delta(conn: duckdb.DuckDBPyConnection, settings, layer: str, table: str, pinned: bool = False) -> None:
    """Make `<layer>.<table>` a view over the Delta table, replacing whatever had that name; `pinned`: over
    the table's current version, which later commits do not change."""
    conn.execute(f"create schema if not exists {quote_identifier(layer)}")
    existing = conn.execute(
        "select table_type from information_schema.tables where table_schema = ? and table_name = ?",
        [layer, table],
    ).fetchone()
    if existing and existing[0] != "VIEW":
        conn.execute(f"drop table {quote_identifier(layer)}.{quote_identifier(table)}")
    path = settings.layer_path(layer, table)
    version = _current_version(path, settings) if pinned else None
    conn.execute(
        f"create or replace view {quote_identifier(layer)}.{quote_identifier(table)} as select * from {delta_scan(path, version)}"
    )


def delta_table_exists(path: str, settings) -> bool:
    from deltalake import DeltaTable

    return DeltaTable.is_deltatable(path, storage_options=settings.delta_storage_options() or None)


def _current_version(path: str, settings) -> int:
    from deltalake import DeltaTable

    return DeltaTable(path, storage_options=settings.delta_storage_options() or None).version()


def register_lake_views(conn: duckdb.DuckDBPyConnection, settings, pinned_layers: tuple[str, ...] = ()) -> list[str]:
    """A view `<layer>.<table>` for every Delta table of the lake; returns their names. The tables of
    `pinned_layers` are read as of now (point_view_at_delta)."""
    for statement in storage_secret_sql(settings):
        conn.execute(statement)
    names = []
    for layer in LAYERS:
        for table in delta_tables(settings, layer):
            point_view_at_delta(conn, settings, layer, table, pinned=layer in pinned_layers)
            names.append(f"{layer}.{table}")
    return names


def delta_scan(path: str, version: int | None = None) -> str:
    """SQL table expression reading the Delta table at `path` (at `version`, else its latest)."""
    return f"delta_scan({quote_literal(path)}{'' if version is None else f', version={int(version)}'})"


def delta_table_stats(path: str, storage_options: dict[str, str] | None = None) -> tuple[int, pa.Schema, int]:
    """Row count (from the Delta log's file statistics, no data scan), Arrow schema and version."""
    import pyarrow as pa
    from deltalake import DeltaTable

    table = DeltaTable(path, storage_options=storage_options or None)
    actions = table.get_add_actions(flatten=True)
    num_records = actions.column("num_records").to_pylist() if actions.num_rows else []
    return sum(n or 0 for n in num_records), pa.schema(table.schema().to_arrow()), table.version()


def table_name_metadata(layer: str, table: str) -> dict:
    """The name an analyst queries the table by (`lakehouse query`), shown by the Dagster UI as its storage."""
    return {"dagster/table_name": f"{layer}.{table}"}


def delta_table_metadata(path: str, storage_options: dict[str, str] | None = None) -> dict:
    """Row count and column schema of a Delta table, in the metadata keys the Dagster UI shows."""
    import dagster as dg

    row_count, schema, version = delta_table_stats(path, storage_options)
    columns = [dg.TableColumn(name=f.name, type=str(f.type)) for f in schema]
    return {
        "dagster/row_count": dg.MetadataValue.int(row_count),
        "dagster/column_schema": dg.MetadataValue.table_schema(dg.TableSchema(columns=columns)),
        "dagster/uri": dg.MetadataValue.path(path),
        "delta_version": dg.MetadataValue.int(version),
    }
