"""Schema drift of a source table, read from the value schemas Debezium sent (bronze/cdc_schemas).

Debezium's JsonConverter puts the table's row schema in every record; bronze keeps each distinct one
once, with when it was first seen. The newest schema of a topic says which columns the source table has
now: a column silver does not know yet (added in Postgres; bronze keeps its values in `after`), a
column silver expects that is gone (dropped: silver fills NULL), and, against the schema before it, a
column whose type changed (silver types its values or rejects them, see silver.rejects).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow.compute as pc
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from pipelines.cdc.ingest import SCHEMAS_TABLE, topic_for
from pipelines.settings import Settings


@dataclass(frozen=True)
class ColumnType:
    type: str  # Kafka Connect type: int32, string, bytes, ...
    name: str | None  # its semantic name, e.g. org.apache.kafka.connect.data.Decimal
    parameters: tuple[tuple[str, str], ...]  # e.g. (("scale", "4"), ("connect.decimal.precision", "14"))

    def __str__(self) -> str:
        # a decimal reads as SQL does: (precision,scale)
        first = {"connect.decimal.precision": 0, "scale": 1}
        params = ",".join(v for _, v in sorted(self.parameters, key=lambda kv: (first.get(kv[0], 2), kv[0])))
        return f"{self.name or self.type}{f'({params})' if params else ''}"


def row_columns(envelope_prefix: str) -> dict[str, ColumnType]:
    """The columns of the `after` row in a JsonConverter envelope prefix (`{"schema":...,"payload":`)."""
    schema = json.loads(envelope_prefix + "null}")["schema"]
    row = next((f for f in schema.get("fields", []) if f.get("field") in ("after", "before")), schema)
    return {
        f["field"]: ColumnType(f.get("type", "?"), f.get("name"), tuple(sorted((f.get("parameters") or {}).items())))
        for f in row.get("fields", [])
    }


def drift_messages(table: str, known: Sequence[str], newest: str, previous: str | None) -> list[str]:
    """What changed in public.`table`, one line each: columns added, dropped and retyped."""
    now = row_columns(newest)
    before = row_columns(previous) if previous is not None else {}
    messages = [f"new column {c} in public.{table}: bronze keeps it, silver does not have it yet"
                for c in now if c not in known]
    messages += [f"column {c} is not in public.{table} any more: silver fills NULL" for c in known if c not in now]
    messages += [f"column {c} of public.{table} changed type from {before[c]} to {now[c]}: silver types its "
                 "values or rejects them (silver.rejects)" for c in now if c in before and before[c] != now[c]]
    return messages


def schema_drift(settings: Settings, table: str, known: Sequence[str]) -> list[str]:
    """drift_messages for the newest schemas bronze holds of the table's topic (none: no messages)."""
    path = settings.bronze_path(SCHEMAS_TABLE)
    try:
        schemas = DeltaTable(path, storage_options=settings.delta_storage_options() or None).to_pyarrow_table(
            columns=["topic", "envelope_prefix", "first_seen"]
        )
    except TableNotFoundError:  # no schema seen yet (schemaless JSON, or nothing ingested): nothing to compare
        return []
    mine = schemas.filter(pc.equal(schemas["topic"], topic_for(settings, table))).sort_by([("first_seen", "descending")])
    prefixes = mine["envelope_prefix"].to_pylist()
    if not prefixes:
        return []
    return drift_messages(table, known, prefixes[0], prefixes[1] if len(prefixes) > 1 else None)
