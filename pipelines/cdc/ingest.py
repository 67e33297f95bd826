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

import logging
import time
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pyarrow as pa
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition
from deltalake import ColumnProperties, CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from pipelines.cdc.bronze_schema import BRONZE_CDC, CDC_SCHEMAS, QUARANTINE, UTC_MICROS
from pipelines.cdc.decode_workers import CHUNK_SCHEMA, POOL, DecodedChunk, RawRecord, strip_prefix
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
# A topic holds at most the batch its writer thread commits, the batch being built, and
# 2 × cdc_decode_workers chunks at the decode workers (each at most MAX_CHUNK_BYTES of values, or one
# larger record).
MAX_BATCH_BYTES = 64 * 1024 * 1024
# Records taken from librdkafka per call: small enough that the messages in hand stay a few MB. Each
# call's records go to the decode workers as one chunk, cut short at MAX_CHUNK_BYTES of values.
CONSUME_CHUNK = 1_000
MAX_CHUNK_BYTES = 8 * 1024 * 1024
# A run up to the topics' end waits this long for a broker that stopped answering (a restart takes
# seconds), then stops with a one-line error; without a bound it waited silently forever. A follower
# waits as long as it runs: it is meant to outlive broker restarts.
BROKER_TIMEOUT = 30.0


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


# A batch holds the decoded chunks of the records read for it; its per-record columns come from the
# decode workers, the rest is per batch (see _Batch.to_table)
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
    chunks: list[pa.RecordBatch] = field(default_factory=list)
    quarantine: list[dict] = field(default_factory=list)
    new_schemas: dict[str, bytes] = field(default_factory=dict)
    next_offsets: dict[int, int] = field(default_factory=dict)

    @property
    def row_count(self) -> int:
        return sum(chunk.num_rows for chunk in self.chunks)

    def to_table(self, topic: str, batch_id: str, now: datetime) -> pa.Table:
        rows = pa.Table.from_batches(self.chunks, schema=CHUNK_SCHEMA)
        n = rows.num_rows
        per_batch = {
            "topic": pa.repeat(pa.scalar(topic), n),
            "ingested_at": pa.repeat(pa.scalar(now, UTC_MICROS), n),
            "ingest_batch_id": pa.repeat(pa.scalar(batch_id), n),
            "ingest_date": pa.repeat(pa.scalar(now.date()), n),
        }
        return pa.Table.from_arrays(
            [per_batch[f.name] if f.name in per_batch else rows.column(f.name) for f in BRONZE_CDC], schema=BRONZE_CDC
        )


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


class LakeWriteError(RuntimeError):
    """The lake's storage failed under a bronze write (full, gone, not writable); nothing of the batch is
    committed."""


def commit_batch_with_offsets(
    settings: Settings, topic: str, table_path: str, batch: _Batch, batch_id: str, expected: dict[int, int | None]
) -> None:
    """Schemas first (idempotent by id), then quarantine (own app transactions), then the rows with the
    offsets: whichever commit a crash interrupts, a retry neither duplicates nor skips. `expected`: the
    next offset per partition of the batch that this run believes the table holds (None: never read)."""
    try:
        _commit_batch(settings, topic, table_path, batch, batch_id, expected)
    except TableNotFoundError:
        raise  # a lake root that cannot hold a table: the CLI already says so in one line
    except (DeltaError, OSError) as exc:
        # e.g. ENOSPC while a data file or the log entry is written: a Delta commit is all or nothing, so
        # the batch is simply absent and the next run reads it again; one line, not a traceback
        reason = " ".join(str(exc).split())
        raise LakeWriteError(
            f"{topic}: writing a batch to {settings.lake_root} failed ({reason}); nothing of the batch is "
            "committed, and the next run reads it again"
        ) from exc


def _commit_batch(
    settings: Settings, topic: str, table_path: str, batch: _Batch, batch_id: str, expected: dict[int, int | None]
) -> None:
    now = datetime.now(timezone.utc)
    failpoint("cdc.before_write")
    table = _table_at_expected_offsets(settings, topic, table_path, expected)
    if batch.new_schemas:
        commit_retrying_conflicts(lambda: _commit_schemas(settings, topic, batch, batch_id, now))
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


def _schema_app_id(topic: str, schema_id: str) -> str:
    return f"{topic}-schema-{schema_id}"


def _commit_schemas(settings: Settings, topic: str, batch: _Batch, batch_id: str, now: datetime) -> None:
    """Appends the batch's new schemas the table does not hold yet. Each row comes with an app transaction
    of its own: two runs of a topic that both saw a schema first cannot both add it (delta-rs refuses the
    later commit, and its retry finds the schema stored)."""
    table = open_or_create(settings.bronze_path(SCHEMAS_TABLE), CDC_SCHEMAS, settings.delta_storage_options() or None)
    fresh = {schema_id: prefix for schema_id, prefix in batch.new_schemas.items()
             if table.transaction_version(_schema_app_id(topic, schema_id)) is None}
    if not fresh:
        return
    rows = [{"schema_id": schema_id, "topic": topic, "envelope_prefix": prefix.decode("utf-8"), "first_seen": now,
             "ingest_batch_id": batch_id} for schema_id, prefix in fresh.items()]
    write_deltalake(
        table,
        pa.Table.from_pylist(rows, schema=CDC_SCHEMAS),
        mode="append",
        commit_properties=CommitProperties(
            app_transactions=[Transaction(_schema_app_id(topic, schema_id), 1) for schema_id in fresh]
        ),
    )


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


def kafka_consumer(settings: Settings) -> Consumer:
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


# a marker in a topic's queue of chunks: the batch ends after the chunks before it
_END_OF_BATCH = object()


@dataclass
class _Decoding:
    """A chunk at the decode workers: its decode_chunk arguments and the offsets it reaches."""

    future: Future
    chunk: tuple
    offsets: dict[int, int]
    retried: bool = False


class TopicIngestion:
    """One topic's way into bronze: where to start, the batch being built, and its commits.

    Records read are sent in chunks to the decode workers; the decoded chunks are applied to the batch
    in the order they were read, and a full batch goes to the writer thread for its Delta commit."""

    def __init__(self, settings: Settings, topic: str, consumer: Consumer, batch_size: int) -> None:
        self.settings = settings
        self.topic = topic
        self.batch_size = batch_size
        self.table_path = settings.bronze_path(bronze_table_for(topic))
        self.result = IngestResult(topic=topic, table_path=self.table_path)
        self.batch = _Batch()
        self.batch_id = str(uuid.uuid4())
        # the batch being read: records (decoded or not yet), their bytes, when its first record came
        self.batch_records = 0
        self.batch_bytes = 0
        self.batch_started = time.monotonic()
        # the chunk being read, and the chunks at the decode workers (or _END_OF_BATCH), in read order
        self.chunk: list[RawRecord] = []
        self.chunk_offsets: dict[int, int] = {}
        self.chunk_bytes = 0
        # the envelope prefix stripped from the values sent to the workers (learned from decoded chunks)
        self.value_prefix: bytes | None = None
        self.decoding: deque = deque()
        self.max_decoding = 2 * settings.cdc_decode_workers
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
        """Takes a record into the current chunk; callers `flush()` after each consume call."""
        self.result.records_read += 1
        if not self.batch_records:
            self.batch_started = time.monotonic()
        value = msg.value()
        size = len(value) if value is not None else 0
        ts_type, ts = msg.timestamp()
        partition, offset = msg.partition(), msg.offset()
        self.chunk.append((partition, offset, ts if ts_type else None, msg.key(), *strip_prefix(value, self.value_prefix)))
        self.chunk_offsets[partition] = offset + 1
        self.chunk_bytes += size
        self.batch_records += 1
        self.batch_bytes += size
        # checked per record: one consume chunk of large records could otherwise exceed the byte bound
        if self.batch_records >= self.batch_size or self.batch_bytes >= MAX_BATCH_BYTES:
            self._end_batch()
            self._apply_decoded()
        elif self.chunk_bytes >= MAX_CHUNK_BYTES:
            self.flush()

    def flush(self) -> None:
        """Sends the chunk read so far to the decode workers and applies the chunks decoded meanwhile."""
        self._send_chunk()
        self._apply_decoded()

    def commit(self) -> None:
        """Ends the batch and waits until it is decoded and handed to the writer thread."""
        self._end_batch()
        self._apply_decoded(wait_all=True)

    def _send_chunk(self) -> None:
        if self.chunk:
            chunk = (self.topic, self.settings.cdc_flattened_records, self.value_prefix, self.chunk)
            self.decoding.append(_Decoding(POOL.submit(self.settings.cdc_decode_workers, *chunk), chunk, self.chunk_offsets))
            self.chunk, self.chunk_offsets, self.chunk_bytes = [], {}, 0

    def _end_batch(self) -> None:
        self._send_chunk()
        self.decoding.append(_END_OF_BATCH)
        self.batch_records = self.batch_bytes = 0

    def _apply_decoded(self, wait_all: bool = False) -> None:
        """Applies decoded chunks in read order: those done, and more while too many are at the workers
        (which bounds memory) or while `wait_all`."""
        while self.decoding:
            head = self.decoding[0]
            if head is _END_OF_BATCH:
                self.decoding.popleft()
                self._hand_to_writer()
                continue
            if not (wait_all or head.future.done() or len(self.decoding) > self.max_decoding):
                return
            try:
                chunk = head.future.result()
            except BrokenProcessPool as exc:
                # decoding is a pure function of the chunk: a worker that died (killed, out of memory, or
                # by a Ctrl-C that came while it started) costs one more try in a fresh pool
                if head.retried:
                    raise DecodeWorkerError(
                        f"{self.topic}: decode worker processes died twice on the same records (killed, or out of "
                        "memory?); the records of this run not committed yet are read again by the next run"
                    ) from exc
                head.future, head.retried = POOL.submit(self.settings.cdc_decode_workers, *head.chunk), True
                continue
            self.decoding.popleft()
            self._apply(chunk, head.offsets)

    def _apply(self, chunk: DecodedChunk, offsets: dict[int, int]) -> None:
        self.batch.chunks.append(chunk.rows)
        self.batch.quarantine.extend(chunk.quarantine)
        for schema_id, prefix in chunk.envelopes.items():
            if schema_id not in self.known_schemas:
                self.known_schemas.add(schema_id)
                self.batch.new_schemas[schema_id] = prefix
        self.batch.next_offsets.update(offsets)
        if chunk.last_prefix is not None:
            self.value_prefix = chunk.last_prefix

    @property
    def batch_age(self) -> float:
        """Seconds since the first record of the batch being read (0 when it has none)."""
        return time.monotonic() - self.batch_started if self.batch_records else 0.0

    def _hand_to_writer(self) -> None:
        """The Delta write (delta-rs, without the GIL) overlaps the reading of the next batch. One batch at
        most is in flight, so commits stay in offset order and memory stays bounded."""
        if self.batch.next_offsets:
            self.wait()
            self._in_flight = self._writer.submit(self._write, self.batch, self.batch_id)
        self.batch = _Batch()
        self.batch_id = str(uuid.uuid4())

    def _write(self, batch: _Batch, batch_id: str) -> None:
        expected = {p: self.committed[p] for p in batch.next_offsets}
        commit_batch_with_offsets(self.settings, self.topic, self.table_path, batch, batch_id, expected)
        self.committed.update(batch.next_offsets)
        self.result.commits += 1
        self.result.bronze_rows += batch.row_count
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
        `failing`: an error is already on its way out, and a failed commit must not replace it; chunks
        still at the decode workers are dropped (they were never committed, a rerun reads them again)."""
        for item in self.decoding:
            if item is not _END_OF_BATCH:
                item.future.cancel()
        self.decoding.clear()
        try:
            self.wait()
        except ConcurrentIngestError as exc:
            if not failing:
                raise
            # the error on its way out has the same cause (another run): one line, no second traceback
            _LOG.warning("%s: the batch in flight was not committed either (%s); it will be read again", self.topic, exc)
        except Exception:
            if not failing:
                raise
            _LOG.exception("%s: the batch in flight failed to commit as well; it will be read again", self.topic)
        finally:
            self._writer.shutdown()


class DecodeWorkerError(RuntimeError):
    """A decode worker process died while this run waited for it."""


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


def _raise_if_broker_gone(consumer: Consumer, settings: Settings, topic: str, waited: float) -> None:
    """After `waited` seconds without a record: a KafkaTopicError if the broker does not answer either."""
    try:
        consumer.list_topics(topic, timeout=5)
    except KafkaException as exc:
        reason = exc.args[0].str() if exc.args and isinstance(exc.args[0], KafkaError) else str(exc)
        raise KafkaTopicError(
            f"Kafka at {settings.kafka_bootstrap} has not answered for {waited:.0f} s while reading {topic} ({reason}); "
            "what this run committed stays in bronze, and the next run resumes from there"
        ) from exc


def ingest_topic(
    settings: Settings, topic: str, batch_size: int = 50_000, poll_timeout: float = 1.0,
    broker_timeout: float = BROKER_TIMEOUT,
) -> IngestResult:
    """Read `topic` from the stored offsets up to the high-water marks seen at the start, then stop.
    A broker that stops answering is waited for `broker_timeout` seconds (librdkafka reconnects)."""
    consumer = kafka_consumer(settings)
    ingestion = None
    try:
        ingestion = TopicIngestion(settings, topic, consumer, batch_size)
        targets = ingestion.result.end_offsets
        pending = {p for p in ingestion.partitions if ingestion.result.start_offsets[p] < targets[p]}
        if not pending:
            ingestion.close()
            return ingestion.result
        consumer.assign([tp for tp in ingestion.assignment if tp.partition in pending])
        last_record = time.monotonic()
        while pending:
            messages = consumer.consume(num_messages=min(batch_size, CONSUME_CHUNK), timeout=poll_timeout)
            if messages:
                last_record = time.monotonic()
            elif time.monotonic() - last_record >= broker_timeout:
                # records below the targets exist: a silence this long means the broker is gone, or slow
                _raise_if_broker_gone(consumer, settings, topic, time.monotonic() - last_record)
                last_record = time.monotonic()
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
            ingestion.flush()
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
    consumer = kafka_consumer(settings)
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
                ingestion.flush()
                ingestion.raise_if_commit_failed()
                if ingestion.batch_age >= max_latency:
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
