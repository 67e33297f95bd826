"""Arrow schemas of the bronze CDC and quarantine Delta tables."""

import pyarrow as pa

UTC_MICROS = pa.timestamp("us", tz="UTC")

BRONZE_CDC = pa.schema(
    [
        pa.field("bronze_id", pa.string(), nullable=False),
        pa.field("topic", pa.string(), nullable=False),
        pa.field("partition", pa.int32(), nullable=False),
        pa.field("offset", pa.int64(), nullable=False),
        pa.field("kafka_ts", UTC_MICROS),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("op", pa.string()),
        # where the change was captured: silver rejects a change of another connector, database or table
        pa.field("source_connector", pa.string()),
        pa.field("source_database", pa.string()),
        pa.field("source_schema", pa.string()),
        pa.field("source_table", pa.string()),
        pa.field("record_key", pa.string()),
        pa.field("before", pa.string()),
        pa.field("after", pa.string()),
        pa.field("unavailable_columns", pa.list_(pa.string())),
        pa.field("lsn", pa.string()),
        pa.field("tx_id", pa.string()),
        pa.field("source_ts", UTC_MICROS),
        pa.field("transaction", pa.string()),
        # the record value exactly as it arrived, without its JsonConverter schema envelope, which is
        # stored once in bronze/cdc_schemas: value = envelope_prefix || raw_payload || "}"
        pa.field("raw_payload", pa.string()),
        pa.field("value_schema_id", pa.string()),
        pa.field("ingested_at", UTC_MICROS, nullable=False),
        pa.field("ingest_batch_id", pa.string(), nullable=False),
        pa.field("ingest_date", pa.date32(), nullable=False),
    ]
)

# One row per distinct value schema seen on a topic (Debezium repeats the schema in every record)
CDC_SCHEMAS = pa.schema(
    [
        pa.field("schema_id", pa.string(), nullable=False),  # SHA-256 of envelope_prefix
        pa.field("topic", pa.string(), nullable=False),
        pa.field("envelope_prefix", pa.string(), nullable=False),  # `{"schema":...,"payload":`
        pa.field("first_seen", UTC_MICROS, nullable=False),
        pa.field("ingest_batch_id", pa.string(), nullable=False),
    ]
)

QUARANTINE = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),  # kafka | s3
        pa.field("location", pa.string(), nullable=False),  # topic/partition/offset or key:line
        pa.field("topic", pa.string()),
        pa.field("partition", pa.int32()),
        pa.field("offset", pa.int64()),
        pa.field("raw_key", pa.binary()),
        pa.field("raw_value", pa.binary()),
        pa.field("error", pa.string(), nullable=False),
        pa.field("first_seen", UTC_MICROS, nullable=False),
        pa.field("ingest_batch_id", pa.string(), nullable=False),
        # S3 events (pipelines/events): the object version and line a quarantined line came from
        pa.field("object_key", pa.string()),
        pa.field("etag", pa.string()),
        pa.field("line_number", pa.int64()),
    ]
)
