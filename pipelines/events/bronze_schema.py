"""Arrow schema of `bronze/events`.

Two kinds of rows, told apart by `row_kind` (a partition column, so each kind is read alone):

- `event`: one per valid line of an object: the mapped envelope, the raw line, and where it came from;
- `object`: one per ingested object version (key, ETag): how many lines it had, how many became rows
  and how many went to quarantine. These rows are the record of what was ingested, committed in the
  same Delta commit as the object's events (see pipelines/events/ingest.py), and what reconciliation
  queries start from.

A row is current while `superseded_at` is null; rewriting an object (new ETag) supersedes every row
of its previous version in the same commit that adds the new ones.
"""

import pyarrow as pa

from pipelines.cdc.bronze_schema import UTC_MICROS

EVENT = "event"
OBJECT = "object"
PARTITION_BY = ["object_day", "row_kind"]

BRONZE_EVENTS = pa.schema(
    [
        pa.field("bronze_id", pa.string(), nullable=False),  # <version>:<line> | <version>; version: <key>@<etag>[#n]
        pa.field("row_kind", pa.string(), nullable=False),  # event | object
        pa.field("event_id", pa.string()),
        pa.field("event_type", pa.string()),
        pa.field("event_source", pa.string()),
        pa.field("event_ts", UTC_MICROS),
        pa.field("version", pa.string()),
        pa.field("correlation_id", pa.string()),
        pa.field("user_id", pa.string()),
        pa.field("session_id", pa.string()),
        pa.field("payload", pa.string()),  # JSON text of data.payload
        pa.field("metadata", pa.string()),  # JSON text of data.metadata
        pa.field("envelope", pa.string()),  # platform | cloudevents
        pa.field("environment", pa.string()),
        pa.field("region", pa.string()),
        pa.field("raw_line", pa.string()),
        pa.field("object_key", pa.string(), nullable=False),
        pa.field("etag", pa.string(), nullable=False),
        pa.field("line_number", pa.int64()),  # 1-based, counting every line of the object
        pa.field("object_size", pa.int64()),
        pa.field("object_last_modified", UTC_MICROS),
        pa.field("lines_read", pa.int64()),
        pa.field("rows_ingested", pa.int64()),
        pa.field("lines_quarantined", pa.int64()),
        pa.field("superseded_at", UTC_MICROS),
        pa.field("superseded_by_etag", pa.string()),
        pa.field("object_day", pa.date32(), nullable=False),  # the S3 day prefix the object lies under
        pa.field("ingested_at", UTC_MICROS, nullable=False),
        pa.field("ingest_batch_id", pa.string(), nullable=False),
    ]
)
