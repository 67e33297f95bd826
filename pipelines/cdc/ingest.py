"""Kafka (Debezium topics) → bronze Delta, exactly once.

Exactly-once argument: the next offset of every partition is stored in the same Delta commit as the
rows read up to it (a Delta app transaction `<topic>-<partition>`, as kafka-delta-ingest does), and a
run starts from those stored offsets, never from the broker's consumer group. A crash before the
commit leaves neither rows nor offsets; after it, both. Quarantined records go to another table, which
is committed first with its own app transactions; on a retry its stored offset filters out what it
already holds, so it too never duplicates.

Two runs of one topic at once (an overlapping schedule, a follower beside a Dagster run) would read the
same offsets. Each commit therefore checks that the table still holds the offsets this run last saw and
commits on that snapshot, so delta-rs refuses it if another run committed the same partitions since;
the later run stops with ConcurrentIngestError and nothing is written twice.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition
from deltalake import ColumnProperties, CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError

from pipelines.cdc.bronze_schema import BRONZE_CDC, CDC_SCHEMAS, QUARANTINE, UTC_MICROS
from pipelines.cdc.decoder import DecodeError, Decoder, Envelope
from pipelines.failpoints import failpoint
from pipelines.settings import Settings
from pipelines.shared_tables import commit_retrying_conflicts, open_or_create, open_table

SOURCE_TABLES = ("customers", "products", "inventory", "orders", "order_items", "payments", "shipments")
TRANSACTIONS = "transaction"
# every Debezium stream we ingest: one per source table, plus the transaction metadata (BEGIN/END)
CDC_STREAMS = (*SOURCE_TABLES, TRANSACTIONS)
SCHEMAS_TABLE = "cdc_schemas"
# A batch also ends at this many bytes of record values, so memory stays bounded whatever the record
# size (Debezium values with schemas are ~7 KB; one may be up to the broker's 64 MiB message limit).
# A topic holds two batches at most: the one being built and the one its writer thread commits.
MAX_BATCH_BYTES = 64 * 1024 * 1024
# Records taken from librdkafka per call: small enough that the messages in hand stay a few MB.
CONSUME_CHUNK = 1_000


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


def stored_offsets(path: str, topic: str, partitions: list[int], storage_options: dict[str, str]) -> dict[int, int]:
    """Next offset to read per partition, as committed in the Delta table (absent = never read)."""
    return _offsets_in(open_table(path, storage_options), topic, partitions)


def _offsets_in(table: DeltaTable | None, topic: str, partitions) -> dict[int, int]:
    if table is None:
        return {}
    found = {}
    for p in partitions:
        version = table.transaction_version(_app_id(topic, p))
        if version is not None:
            found[p] = version
    return found


def _json(value) -> bytes | None:
    if value is None:
        return None
    try:
        return orjson.dumps(value)
    except TypeError:  # an integer beyond 64 bits, which orjson does not write
        return json.dumps(value, separators=(",", ":")).encode()


def _text(value) -> str | None:
    return None if value is None else str(value)


# the per-record part of a bronze row, in this order; the rest is per batch (see _Batch.to_table)
_RECORD_COLUMNS = ("partition", "offset", "kafka_ts", "kind", "op", "source_schema", "source_table", "record_key",
                   "before", "after", "unavailable_columns", "lsn", "tx_id", "source_ts", "transaction",
                   "raw_payload", "value_schema_id")
_MILLIS = pa.int64()
_BRONZE_PARTITIONING = ["ingest_date"]
# The JSON columns are unique per row: dictionaries and min/max statistics there only cost time.
# zstd level 1 writes faster than the default snappy here and half the bytes (bench/ingest_cdc.py).
_BRONZE_WRITER = WriterProperties(
    compression="ZSTD",
    compression_level=1,
    column_properties={
        name: ColumnProperties(dictionary_enabled=False, statistics_enabled="NONE")
        for name in ("record_key", "before", "after", "transaction", "raw_payload")
    },
)


@dataclass
class _Batch:
    rows: list[tuple] = field(default_factory=list)
    quarantine: list[dict] = field(default_factory=list)
    new_schemas: dict[str, Envelope] = field(default_factory=dict)
    next_offsets: dict[int, int] = field(default_factory=dict)
    value_bytes: int = 0

    def to_table(self, topic: str, batch_id: str, now: datetime) -> pa.Table:
        """Columns are built whole: per-record Python work stays in `TopicIngestion.add`."""
        columns = dict(zip(_RECORD_COLUMNS, zip(*self.rows))) if self.rows else {c: () for c in _RECORD_COLUMNS}
        n = len(self.rows)
        arrays = {name: pa.array(columns[name], BRONZE_CDC.field(name).type) for name in _RECORD_COLUMNS
                  if name not in ("kafka_ts", "source_ts")}
        for name in ("kafka_ts", "source_ts"):
            arrays[name] = pc.multiply(pa.array(columns[name], _MILLIS), 1000).cast(UTC_MICROS)
        arrays["bronze_id"] = pc.binary_join_element_wise(
            topic, arrays["partition"].cast(pa.string()), arrays["offset"].cast(pa.string()), "/"
        )
        arrays["topic"] = pa.repeat(pa.scalar(topic), n)
        arrays["ingested_at"] = pa.repeat(pa.scalar(now, UTC_MICROS), n)
        arrays["ingest_batch_id"] = pa.repeat(pa.scalar(batch_id), n)
        arrays["ingest_date"] = pa.repeat(pa.scalar(now.date()), n)
        return pa.Table.from_arrays([arrays[f.name] for f in BRONZE_CDC], schema=BRONZE_CDC)


def _quarantine_row(msg: Message, error: str) -> dict:
    return {
        "source": "kafka",
        "location": f"{msg.topic()}/{msg.partition()}/{msg.offset()}",
        "topic": msg.topic(),
        "partition": msg.partition(),
        "offset": msg.offset(),
        "raw_key": msg.key(),
        "raw_value": msg.value(),
        "error": error,
    }


def stored_schema_ids(settings: Settings, topic: str) -> set[str]:
    table = open_table(settings.bronze_path(SCHEMAS_TABLE), settings.delta_storage_options())
    if table is None:
        return set()
    ids = table.to_pyarrow_table(columns=["schema_id"], filters=[("topic", "=", topic)]).column("schema_id")
    return set(ids.to_pylist())


class ConcurrentIngestError(RuntimeError):
    """Another run committed offsets of the same topic while this one ran; this run stops."""


def _table_at_expected_offsets(
    settings: Settings, topic: str, table_path: str, expected: dict[int, int | None]
) -> DeltaTable:
    """The bronze table as it is now (created empty if missing), provided it holds the offsets this run
    last saw."""
    table = open_or_create(table_path, BRONZE_CDC, settings.delta_storage_options() or None, _BRONZE_PARTITIONING)
    found = {p: table.transaction_version(_app_id(topic, p)) for p in expected}
    if found != expected:
        moved = {p: (expected[p], found[p]) for p in expected if found[p] != expected[p]}
        raise ConcurrentIngestError(
            f"{topic}: another run committed offsets while this one ran (partition: (expected, found) {moved}); "
            "this run stops without writing its batch again"
        )
    return table


def commit_batch_with_offsets(
    settings: Settings, topic: str, table_path: str, batch: _Batch, batch_id: str, expected: dict[int, int | None]
) -> None:
    """Schemas first (idempotent by id), then quarantine (own app transactions), then the rows with the
    offsets: whichever commit a crash interrupts, a retry neither duplicates nor skips. `expected`: the
    next offset per partition of the batch that this run believes the table holds (None: never read)."""
    options = settings.delta_storage_options() or None
    now = datetime.now(timezone.utc)
    failpoint("cdc.before_write")
    table = _table_at_expected_offsets(settings, topic, table_path, expected)
    if batch.new_schemas:
        schemas = [
            {"schema_id": schema_id, "topic": topic, "envelope_prefix": envelope.prefix.decode("utf-8"),
             "first_seen": now, "ingest_batch_id": batch_id}
            for schema_id, envelope in batch.new_schemas.items()
        ]
        commit_retrying_conflicts(lambda: write_deltalake(
            settings.bronze_path(SCHEMAS_TABLE), pa.Table.from_pylist(schemas, schema=CDC_SCHEMAS),
            mode="append", storage_options=options,
        ))
    if batch.quarantine and commit_retrying_conflicts(lambda: _commit_quarantine(settings, topic, batch, batch_id, now)):
        failpoint("cdc.after_quarantine_commit")
    try:
        # on the snapshot whose offsets were checked: a commit of the same partitions by another run since
        # then is a conflict delta-rs refuses
        write_deltalake(
            table,
            batch.to_table(topic, batch_id, now),
            mode="append",
            partition_by=_BRONZE_PARTITIONING,
            writer_properties=_BRONZE_WRITER,
            # bronze tables gained value_schema_id: older tables get it (null: raw_payload is the whole value)
            schema_mode="merge",
            commit_properties=CommitProperties(
                app_transactions=[Transaction(_app_id(topic, p), o) for p, o in batch.next_offsets.items()]
            ),
        )
    except CommitFailedError as exc:
        raise ConcurrentIngestError(
            f"{topic}: another run committed to {table_path} at the same time; this run stops ({exc})"
        ) from exc
    failpoint("cdc.after_commit")


def _commit_quarantine(settings: Settings, topic: str, batch: _Batch, batch_id: str, now: datetime) -> bool:
    """Appends the batch's quarantined records the table does not hold yet; False if it holds them all."""
    table = open_or_create(settings.bronze_path("quarantine"), QUARANTINE, settings.delta_storage_options() or None)
    done = _offsets_in(table, topic, batch.next_offsets)
    fresh = [{**r, "first_seen": now, "ingest_batch_id": batch_id}
             for r in batch.quarantine if r["offset"] >= done.get(r["partition"], -1)]
    if not fresh:
        return False
    touched = {r["partition"] for r in fresh}
    # on the snapshot `done` was read from: if another run of this topic quarantined the same records
    # since, delta-rs refuses this commit (same app transactions) and the retry reads them as done
    write_deltalake(
        table,
        pa.Table.from_pylist(fresh, schema=QUARANTINE),
        mode="append",
        # the quarantine table gained columns over time (S3 provenance): older tables get them
        schema_mode="merge",
        commit_properties=CommitProperties(
            app_transactions=[Transaction(_app_id(topic, p), batch.next_offsets[p]) for p in touched]
        ),
    )
    return True


# librdkafka's own log (every failed connection attempt, several per second) goes through Python logging
# rather than straight to stderr: a broken bootstrap address is reported once, as a KafkaTopicError
_LOG = logging.getLogger(__name__)
_KAFKA_LOG = logging.getLogger("pipelines.cdc.kafka")
_KAFKA_LOG.addHandler(logging.NullHandler())


def _consumer(settings: Settings) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "logger": _KAFKA_LOG,
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
            # librdkafka stops fetching a partition whose local queue is full (64 MB: ~10k Debezium records)
            # and by default looks again only after 1 s. Decoding drains that queue in about half a second,
            # so half of every run was spent waiting for the next fetch (bench/ingest_cdc.py: 2× faster)
            "fetch.queue.backoff.ms": 10,
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
        self.decoder = Decoder(allow_flattened=settings.cdc_flattened_records)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"bronze-{topic}")
        self._in_flight: Future | None = None
        self.known_schemas = stored_schema_ids(settings, topic)
        try:
            metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        except KafkaException as exc:
            reason = exc.args[0].str() if exc.args and isinstance(exc.args[0], KafkaError) else str(exc)
            raise KafkaTopicError(f"cannot read topic {topic!r} from Kafka at {settings.kafka_bootstrap}: {reason}") from exc
        if metadata is None or metadata.error is not None:
            raise KafkaTopicError(f"Kafka topic {topic!r} not found on {settings.kafka_bootstrap}")
        self.partitions = sorted(metadata.partitions)
        stored = stored_offsets(self.table_path, topic, self.partitions, settings.delta_storage_options())
        # what the table holds, as far as this run knows: each commit checks it is still so
        self.committed: dict[int, int | None] = {p: stored.get(p) for p in self.partitions}
        self.assignment = []
        for p in self.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            start = max(stored.get(p, low), low)
            self.result.start_offsets[p] = start
            self.result.end_offsets[p] = high
            self.assignment.append(TopicPartition(topic, p, start if p in stored else OFFSET_BEGINNING))

    def add(self, msg: Message) -> None:
        self.result.records_read += 1
        value = msg.value()
        self.batch.value_bytes += len(value or b"")
        try:
            record, envelope = self.decoder.decode_with_envelope(value, msg.key(), self.topic)
        except DecodeError as exc:
            self.batch.quarantine.append(_quarantine_row(msg, str(exc)))
        else:
            schema_id = envelope.id
            if schema_id is not None and schema_id not in self.known_schemas:
                self.known_schemas.add(schema_id)
                self.batch.new_schemas[schema_id] = envelope
            ts_type, ts = msg.timestamp()
            # only immutable atoms in a row (a tuple, not a list, of unavailable columns): the garbage
            # collector then stops tracking the rows, instead of walking a whole batch of them on every
            # full collection (bench/ingest_cdc.py: +15 %)
            self.batch.rows.append((
                msg.partition(), msg.offset(), ts if ts_type else None, record.kind, record.op, record.schema,
                record.table, _json(record.key), _json(record.before), _json(record.after),
                record.unavailable_columns, _text(record.lsn), _text(record.tx_id), record.ts_ms,
                _json(record.transaction), None if value is None else envelope.payload_bytes(value), schema_id,
            ))
        self.batch.next_offsets[msg.partition()] = msg.offset() + 1
        # checked per record: one consume chunk of large records could otherwise exceed the byte bound
        if self.batch_full:
            self.commit()

    @property
    def batch_full(self) -> bool:
        return (
            len(self.batch.rows) + len(self.batch.quarantine) >= self.batch_size
            or self.batch.value_bytes >= MAX_BATCH_BYTES
        )

    @property
    def batch_age(self) -> float:
        return time.monotonic() - self.batch_started

    def commit(self) -> None:
        """Hands the batch to the writer thread and starts a new one: the Delta write (delta-rs, without
        the GIL) overlaps the decoding of the next batch. One batch at most is in flight, so commits stay
        in offset order and memory stays bounded."""
        if self.batch.next_offsets:
            self.wait()
            self._in_flight = self._writer.submit(self._write, self.batch, self.batch_id)
        self.batch = _Batch()
        self.batch_id = str(uuid.uuid4())
        self.batch_started = time.monotonic()

    def _write(self, batch: _Batch, batch_id: str) -> None:
        expected = {p: self.committed[p] for p in batch.next_offsets}
        commit_batch_with_offsets(self.settings, self.topic, self.table_path, batch, batch_id, expected)
        self.committed.update(batch.next_offsets)
        self.result.commits += 1
        self.result.bronze_rows += len(batch.rows)
        self.result.quarantined += len(batch.quarantine)

    def wait(self) -> None:
        """Until the batch in flight is committed; raises its error if the commit failed."""
        if self._in_flight is not None:
            in_flight, self._in_flight = self._in_flight, None
            in_flight.result()

    def raise_if_commit_failed(self) -> None:
        """A failed commit surfaces now, not when this topic next has a full batch (maybe never)."""
        if self._in_flight is not None and self._in_flight.done():
            self.wait()

    def close(self, failing: bool = False) -> None:
        """Waits for the batch in flight (a commit is never abandoned half way) and stops the writer.
        `failing`: an error is already on its way out, and a failed commit must not replace it."""
        try:
            self.wait()
        except Exception:
            if not failing:
                raise
            _LOG.exception("%s: the batch in flight failed to commit as well; it will be read again", self.topic)
        finally:
            self._writer.shutdown()


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
    ingestion = None
    try:
        ingestion = TopicIngestion(settings, topic, consumer, batch_size)
        targets = ingestion.result.end_offsets
        pending = {p for p in ingestion.partitions if ingestion.result.start_offsets[p] < targets[p]}
        if not pending:
            ingestion.close()
            return ingestion.result
        consumer.assign([tp for tp in ingestion.assignment if tp.partition in pending])
        while pending:
            messages = consumer.consume(num_messages=min(batch_size, CONSUME_CHUNK), timeout=poll_timeout)
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
                ingestion.add(msg)
                if msg.offset() + 1 >= targets[p]:
                    pending.discard(p)
            if not pending:
                ingestion.commit()
        ingestion.close()
        return ingestion.result
    except BaseException:
        if ingestion is not None:
            ingestion.close(failing=True)
        raise
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
    ingestions: dict[str, TopicIngestion] = {}
    try:
        for topic in topics:
            ingestions[topic] = TopicIngestion(settings, topic, consumer, batch_size)
        consumer.assign([tp for i in ingestions.values() for tp in i.assignment])
        while not should_stop():
            messages = consumer.consume(num_messages=CONSUME_CHUNK, timeout=min(max_latency, 0.2))
            for msg in messages:
                if _check(msg):
                    ingestions[msg.topic()].add(msg)
            for ingestion in ingestions.values():
                ingestion.raise_if_commit_failed()
                if ingestion.batch.next_offsets and ingestion.batch_age >= max_latency:
                    ingestion.commit()
        for ingestion in ingestions.values():
            ingestion.commit()
        for ingestion in ingestions.values():
            ingestion.close()
        return [i.result for i in ingestions.values()]
    except BaseException:
        for ingestion in ingestions.values():
            ingestion.close(failing=True)
        raise
    finally:
        consumer.close()
