"""Kafka (Debezium topics) → bronze Delta, exactly once.

Exactly-once argument: the next offset of every partition is stored in the same Delta commit as the
rows read up to it (a Delta app transaction `<topic>-<partition>`, as kafka-delta-ingest does), and a
run starts from those stored offsets, never from the broker's consumer group. A crash before the
commit leaves neither rows nor offsets; after it, both. Quarantined records go to another table, which
is committed first with its own app transactions; on a retry its stored offset filters out what it
already holds, so it too never duplicates.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pyarrow as pa
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import TableNotFoundError

from pipelines.cdc.bronze_schema import BRONZE_CDC, QUARANTINE
from pipelines.cdc.decoder import DecodeError, decode
from pipelines.failpoints import failpoint
from pipelines.settings import Settings

SOURCE_TABLES = ("customers", "products", "inventory", "orders", "order_items", "payments", "shipments")
TRANSACTIONS = "transaction"
# every Debezium stream we ingest: one per source table, plus the transaction metadata (BEGIN/END)
CDC_STREAMS = (*SOURCE_TABLES, TRANSACTIONS)


def bronze_table_name(stream: str) -> str:
    return "cdc_transactions" if stream == TRANSACTIONS else f"cdc_{stream}"


def bronze_table_for(topic: str) -> str:
    """`shop.public.orders` → `cdc_orders`; `shop.transaction` → `cdc_transactions`."""
    return bronze_table_name(topic.rsplit(".", 1)[-1])


def topic_for(settings: Settings, stream: str) -> str:
    if stream == TRANSACTIONS:
        return f"{settings.topic_prefix}.{TRANSACTIONS}"
    return f"{settings.topic_prefix}.public.{stream}"


@dataclass
class IngestResult:
    topic: str
    table_path: str
    records_read: int = 0
    bronze_rows: int = 0
    quarantined: int = 0
    commits: int = 0
    start_offsets: dict[int, int] = field(default_factory=dict)
    end_offsets: dict[int, int] = field(default_factory=dict)


def _app_id(topic: str, partition: int) -> str:
    return f"{topic}-{partition}"


def _open(path: str, storage_options: dict[str, str]) -> DeltaTable | None:
    try:
        return DeltaTable(path, storage_options=storage_options or None)
    except TableNotFoundError:
        return None


def stored_offsets(path: str, topic: str, partitions: list[int], storage_options: dict[str, str]) -> dict[int, int]:
    """Next offset to read per partition, as committed in the Delta table (absent = never read)."""
    table = _open(path, storage_options)
    if table is None:
        return {}
    found = {}
    for p in partitions:
        version = table.transaction_version(_app_id(topic, p))
        if version is not None:
            found[p] = version
    return found


def _ms_to_ts(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def _json_or_none(value) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), sort_keys=False)


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8")


@dataclass
class _Batch:
    rows: list[dict] = field(default_factory=list)
    quarantine: list[dict] = field(default_factory=list)
    next_offsets: dict[int, int] = field(default_factory=dict)


def _to_row(msg: Message, batch_id: str, now: datetime, flattened: bool) -> dict:
    record = decode(msg.value(), msg.key(), msg.topic(), allow_flattened=flattened)
    ts_type, ts = msg.timestamp()
    return {
        "bronze_id": f"{msg.topic()}/{msg.partition()}/{msg.offset()}",
        "topic": msg.topic(),
        "partition": msg.partition(),
        "offset": msg.offset(),
        "kafka_ts": _ms_to_ts(ts) if ts_type else None,
        "kind": record.kind,
        "op": record.op,
        "source_schema": record.schema,
        "source_table": record.table,
        "record_key": _json_or_none(record.key),
        "before": _json_or_none(record.before),
        "after": _json_or_none(record.after),
        "unavailable_columns": list(record.unavailable_columns),
        "lsn": None if record.lsn is None else str(record.lsn),
        "tx_id": None if record.tx_id is None else str(record.tx_id),
        "source_ts": _ms_to_ts(record.ts_ms),
        "transaction": _json_or_none(record.transaction),
        "raw_payload": _text(msg.value()),
        "ingested_at": now,
        "ingest_batch_id": batch_id,
        "ingest_date": now.date(),
    }


def _to_quarantine(msg: Message, error: str, batch_id: str, now: datetime) -> dict:
    return {
        "source": "kafka",
        "location": f"{msg.topic()}/{msg.partition()}/{msg.offset()}",
        "topic": msg.topic(),
        "partition": msg.partition(),
        "offset": msg.offset(),
        "raw_key": msg.key(),
        "raw_value": msg.value(),
        "error": error,
        "first_seen": now,
        "ingest_batch_id": batch_id,
    }


def commit_batch_with_offsets(settings: Settings, topic: str, table_path: str, batch: _Batch) -> None:
    options = settings.delta_storage_options() or None
    failpoint("cdc.before_write")
    if batch.quarantine:
        quarantine_path = settings.bronze_path("quarantine")
        done = stored_offsets(quarantine_path, topic, list(batch.next_offsets), settings.delta_storage_options())
        fresh = [r for r in batch.quarantine if r["offset"] >= done.get(r["partition"], -1)]
        if fresh:
            touched = {r["partition"] for r in fresh}
            write_deltalake(
                quarantine_path,
                pa.Table.from_pylist(fresh, schema=QUARANTINE),
                mode="append",
                # the quarantine table gained columns over time (S3 provenance): older tables get them
                schema_mode="merge",
                storage_options=options,
                commit_properties=CommitProperties(
                    app_transactions=[Transaction(_app_id(topic, p), batch.next_offsets[p]) for p in touched]
                ),
            )
            failpoint("cdc.after_quarantine_commit")
    write_deltalake(
        table_path,
        pa.Table.from_pylist(batch.rows, schema=BRONZE_CDC),
        mode="append",
        partition_by=["ingest_date"],
        storage_options=options,
        commit_properties=CommitProperties(
            app_transactions=[Transaction(_app_id(topic, p), o) for p, o in batch.next_offsets.items()]
        ),
    )
    failpoint("cdc.after_commit")


def _consumer(settings: Settings) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            # offsets live in Delta; the group only names us in broker tools
            "group.id": "lakehouse-bronze-cdc",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            # end-of-partition events tell us a target was reached even when the last offsets are not
            # messages (transaction markers, compaction)
            "enable.partition.eof": True,
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": 16 * 1024 * 1024,
        }
    )


class TopicIngestion:
    """One topic's way into bronze: where to start, the batch being built, and its commits."""

    def __init__(self, settings: Settings, topic: str, consumer: Consumer, batch_size: int) -> None:
        self.settings = settings
        self.topic = topic
        self.batch_size = batch_size
        self.table_path = settings.bronze_path(bronze_table_for(topic))
        self.result = IngestResult(topic=topic, table_path=self.table_path)
        self.batch = _Batch()
        self.batch_id = str(uuid.uuid4())
        self.batch_started = time.monotonic()
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            raise KafkaTopicError(f"Kafka topic {topic!r} not found on {settings.kafka_bootstrap}")
        self.partitions = sorted(metadata.partitions)
        stored = stored_offsets(self.table_path, topic, self.partitions, settings.delta_storage_options())
        self.assignment = []
        for p in self.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            start = max(stored.get(p, low), low)
            self.result.start_offsets[p] = start
            self.result.end_offsets[p] = high
            self.assignment.append(TopicPartition(topic, p, start if p in stored else OFFSET_BEGINNING))

    def add(self, msg: Message, now: datetime) -> None:
        self.result.records_read += 1
        try:
            self.batch.rows.append(_to_row(msg, self.batch_id, now, self.settings.cdc_flattened_records))
        except (DecodeError, UnicodeDecodeError) as exc:
            self.batch.quarantine.append(_to_quarantine(msg, str(exc), self.batch_id, now))
        self.batch.next_offsets[msg.partition()] = msg.offset() + 1

    @property
    def batch_full(self) -> bool:
        return len(self.batch.rows) + len(self.batch.quarantine) >= self.batch_size

    @property
    def batch_age(self) -> float:
        return time.monotonic() - self.batch_started

    def commit(self) -> None:
        if self.batch.next_offsets:
            commit_batch_with_offsets(self.settings, self.topic, self.table_path, self.batch)
            self.result.commits += 1
            self.result.bronze_rows += len(self.batch.rows)
            self.result.quarantined += len(self.batch.quarantine)
        self.batch = _Batch()
        self.batch_id = str(uuid.uuid4())
        self.batch_started = time.monotonic()


class KafkaTopicError(RuntimeError):
    """A topic that does not exist or a broker error while reading it."""


def _check(msg: Message) -> bool:
    """True for a data message; False for an end-of-partition event; raises on a real error."""
    error = msg.error()
    if error is None:
        return True
    if error.code() == KafkaError._PARTITION_EOF:
        return False
    raise KafkaTopicError(f"Kafka error on {msg.topic()}/{msg.partition()}: {error}")


def ingest_topic(settings: Settings, topic: str, batch_size: int = 50_000, poll_timeout: float = 1.0) -> IngestResult:
    """Read `topic` from the stored offsets up to the high-water marks seen at the start, then stop."""
    consumer = _consumer(settings)
    try:
        ingestion = TopicIngestion(settings, topic, consumer, batch_size)
        targets = ingestion.result.end_offsets
        pending = {p for p in ingestion.partitions if ingestion.result.start_offsets[p] < targets[p]}
        if not pending:
            return ingestion.result
        consumer.assign([tp for tp in ingestion.assignment if tp.partition in pending])
        while pending:
            messages = consumer.consume(num_messages=min(batch_size, 10_000), timeout=poll_timeout)
            now = datetime.now(timezone.utc)
            for msg in messages:
                p = msg.partition()
                if p not in pending:
                    continue
                if not _check(msg):
                    if msg.offset() >= targets[p]:
                        pending.discard(p)
                    continue
                if msg.offset() >= targets[p]:
                    pending.discard(p)
                    continue
                ingestion.add(msg, now)
                if msg.offset() + 1 >= targets[p]:
                    pending.discard(p)
            if ingestion.batch_full or not pending:
                ingestion.commit()
        return ingestion.result
    finally:
        consumer.close()


def follow_topics(
    settings: Settings,
    topics: list[str],
    batch_size: int = 50_000,
    max_latency: float = 1.0,
    should_stop=lambda: False,
) -> list[IngestResult]:
    """Continuous mode: consume `topics` and commit each topic's batch when it is full or `max_latency`
    seconds old, until `should_stop()` is true; the pending batches are committed before returning."""
    consumer = _consumer(settings)
    try:
        ingestions = {topic: TopicIngestion(settings, topic, consumer, batch_size) for topic in topics}
        consumer.assign([tp for i in ingestions.values() for tp in i.assignment])
        while not should_stop():
            messages = consumer.consume(num_messages=10_000, timeout=min(max_latency, 0.2))
            now = datetime.now(timezone.utc)
            for msg in messages:
                if _check(msg):
                    ingestions[msg.topic()].add(msg, now)
            for ingestion in ingestions.values():
                if ingestion.batch_full or (ingestion.batch.next_offsets and ingestion.batch_age >= max_latency):
                    ingestion.commit()
        for ingestion in ingestions.values():
            ingestion.commit()
        return [i.result for i in ingestions.values()]
    finally:
        consumer.close()
