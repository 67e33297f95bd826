"""Kafka records → bronze rows, decoded in worker processes.

Decoding is pure Python and holds the GIL: one process decoded about 30k Debezium events a second with
a core to spare (bench/ingest_cdc.py). So the ingest process only consumes and
commits; chunks of raw records go to a pool of worker processes and come back as Arrow record batches
of bronze rows plus the quarantined records. Workers hold no state that changes a result (only each
topic's schema envelope, a cache), so any worker may decode any chunk, and the ingest process applies
the chunks in the order it read them: offsets, batches and commits are exactly as without workers.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.cdc.bronze_schema import BRONZE_CDC, UTC_MICROS
from pipelines.cdc.decoder import DecodeError, Decoder
from pipelines.failpoints import failpoint

# (partition, offset, kafka timestamp in ms or None, key bytes, value bytes, stripped): what a worker
# needs of a Kafka message (confluent-kafka's Message objects cannot be pickled). `stripped`: the value
# is sent without the envelope prefix of its chunk (`{"schema":...,"payload":` and the closing `}`).
# Debezium repeats its schema in every value: about four fifths of its bytes need not travel.
RawRecord = tuple[int, int, "int | None", "bytes | None", "bytes | None", bool]

# the columns a worker fills; the ingest process adds the per-batch ones (topic, ingested_at, ...)
CHUNK_COLUMNS = ("bronze_id", "partition", "offset", "kafka_ts", "kind", "op", "source_connector", "source_database",
                 "source_schema", "source_table", "record_key", "before", "after", "unavailable_columns", "lsn", "tx_id", "source_ts", "transaction",
                 "raw_payload", "value_schema_id")
CHUNK_SCHEMA = pa.schema([BRONZE_CDC.field(name) for name in CHUNK_COLUMNS])
_MILLIS = pa.int64()


@dataclass
class DecodedChunk:
    rows: pa.RecordBatch
    quarantine: list[dict] = field(default_factory=list)
    # schema id → the envelope prefix (`{"schema":...,"payload":`) of every value schema in the chunk
    envelopes: dict[str, bytes] = field(default_factory=dict)
    # the envelope prefix of the chunk's last value that had one: the ingest process strips it from the
    # values it sends next
    last_prefix: bytes | None = None


def _json(value) -> bytes | None:
    if value is None:
        return None
    try:
        return orjson.dumps(value)
    except TypeError:  # an integer beyond 64 bits, which orjson does not write
        return json.dumps(value, separators=(",", ":")).encode()


def _text(value) -> str | None:
    return None if value is None else str(value)


def strip_prefix(value: bytes | None, prefix: bytes | None) -> tuple[bytes | None, bool]:
    """`value` without the envelope prefix (and the closing brace) if it has that prefix."""
    if prefix is not None and value is not None and value.startswith(prefix) and value.endswith(b"}"):
        return value[len(prefix) : -1], True
    return value, False


def quarantine_row(topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, error: str) -> dict:
    return {
        "source": "kafka",
        "location": f"{topic}/{partition}/{offset}",
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "raw_key": key,
        "raw_value": value,
        "error": error,
    }


# one per process: its envelope caches are what makes a record after the first of a topic cheap
_DECODERS: dict[bool, Decoder] = {}


def decode_chunk(topic: str, allow_flattened: bool, prefix: bytes | None, records: list[RawRecord]) -> DecodedChunk:
    """Bronze rows of the records that decode, quarantine rows of those that do not. Runs in a worker.
    `prefix`: the envelope prefix stripped from the records marked so; they decode exactly as the whole
    value would (Decoder.decode_payload)."""
    failpoint("cdc.decode_chunk")
    decoder = _DECODERS.get(allow_flattened)
    if decoder is None:
        decoder = _DECODERS[allow_flattened] = Decoder(allow_flattened=allow_flattened)
    columns: dict[str, list] = {name: [] for name in CHUNK_COLUMNS if name != "bronze_id"}
    quarantine, envelopes, last_prefix = [], {}, None
    (partitions, offsets, kafka_ts, kinds, ops, connectors, databases, schemas, tables, keys, befores, afters,
     unavailable, lsns, tx_ids, source_ts, transactions, payloads, schema_ids) = columns.values()
    sources: list[RawRecord] = []  # the record of each row, should the row not fit its columns
    under_prefix: dict[str | None, bool] = {}  # envelope id → whether its prefix is the chunk's
    for record in records:
        partition, offset, ts, key, value, stripped = record
        try:
            if stripped:
                decoded, envelope = decoder.decode_payload(value, prefix, key, topic)
                # a value that starts with the prefix yet is no envelope under it is stored whole; the
                # comparison is made once per envelope of the chunk (its id hashes its prefix)
                if envelope.id not in under_prefix:
                    under_prefix[envelope.id] = envelope.prefix == prefix
                payload = value if under_prefix[envelope.id] else envelope.payload_bytes(prefix + value + b"}")
            else:
                decoded, envelope = decoder.decode_with_envelope(value, key, topic)
                payload = None if value is None else envelope.payload_bytes(value)
        except DecodeError as exc:
            quarantine.append(quarantine_row(topic, partition, offset, key, _original(record, prefix), str(exc)))
            continue
        schema_id = envelope.id
        if schema_id is not None:
            last_prefix = envelopes[schema_id] = envelope.prefix
        sources.append(record)
        partitions.append(partition)
        offsets.append(offset)
        kafka_ts.append(ts)
        kinds.append(decoded.kind)
        ops.append(decoded.op)
        connectors.append(decoded.connector)
        databases.append(decoded.database)
        schemas.append(decoded.schema)
        tables.append(decoded.table)
        keys.append(_json(decoded.key))
        befores.append(_json(decoded.before))
        afters.append(_json(decoded.after))
        unavailable.append(decoded.unavailable_columns)
        lsns.append(_text(decoded.lsn))
        tx_ids.append(_text(decoded.tx_id))
        source_ts.append(decoded.ts_ms)
        transactions.append(_json(decoded.transaction))
        payloads.append(payload)
        schema_ids.append(schema_id)
    try:
        rows = _record_batch(topic, columns)
    except _UNSTORABLE:
        rows = _storable_rows(topic, prefix, columns, sources, quarantine)
    return DecodedChunk(rows=rows, quarantine=quarantine, envelopes=envelopes, last_prefix=last_prefix)


def _original(record: RawRecord, prefix: bytes | None) -> bytes | None:
    _, _, _, _, value, stripped = record
    return prefix + value + b"}" if stripped else value


def _record_batch(topic: str, columns: dict[str, list]) -> pa.RecordBatch:
    arrays = {name: pa.array(values, CHUNK_SCHEMA.field(name).type) for name, values in columns.items()
              if name not in ("kafka_ts", "source_ts")}
    for name in ("kafka_ts", "source_ts"):
        arrays[name] = pc.multiply(pa.array(columns[name], _MILLIS), 1000).cast(UTC_MICROS)
    arrays["bronze_id"] = pc.binary_join_element_wise(
        topic, arrays["partition"].cast(pa.string()), arrays["offset"].cast(pa.string()), "/"
    )
    return pa.RecordBatch.from_arrays([arrays[name] for name in CHUNK_COLUMNS], schema=CHUNK_SCHEMA)


# what Arrow raises for a value that does not fit its column
_UNSTORABLE = (pa.ArrowException, ValueError, TypeError, OverflowError)


def _storable_rows(
    topic: str, prefix: bytes | None, columns: dict[str, list], sources: list[RawRecord], quarantine: list[dict]
) -> pa.RecordBatch:
    """The chunk's rows without those Arrow cannot store (which go to quarantine): the decoder checks what
    it knows to check, and one unforeseen value must not stop the topic."""
    keep = []
    for i, record in enumerate(sources):
        try:
            _record_batch(topic, {name: values[i : i + 1] for name, values in columns.items()})
            keep.append(i)
        except _UNSTORABLE as exc:
            partition, offset, _, key, _, _ = record
            reason = f"decoded, but cannot be stored in bronze: {exc}"
            quarantine.append(quarantine_row(topic, partition, offset, key, _original(record, prefix), reason))
    return _record_batch(topic, {name: [values[i] for i in keep] for name, values in columns.items()})


def _start_worker(parent: int) -> None:
    """Workers stop with their ingest process, never on their own:
    - Ctrl-C reaches the whole process group, and SIGTERM the whole cgroup under systemd, but only the
      ingest process decides when to stop (a follower commits what it holds first), so workers ignore both;
    - a worker whose ingest process died (SIGKILL, OOM) would otherwise wait for work forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


_INHERITED: list[ProcessPoolExecutor] = []


class DecodePool:
    """The worker processes of one ingest process, started on first use and shared by its topics."""

    def __init__(self) -> None:
        self._forget()
        # a process forked from this one inherits the pool's state but not its threads: it starts its own
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        if getattr(self, "_executor", None) is not None:
            # an executor inherited through fork stays referenced: releasing it would run its cleanup,
            # which takes a lock the parent's manager thread may have held at the fork
            _INHERITED.append(self._executor)
        self._executor: ProcessPoolExecutor | None = None
        self._workers = 0
        self._lock = threading.Lock()

    def submit(self, workers: int, *chunk) -> Future:
        """decode_chunk(*chunk) in a worker."""
        with self._lock:
            if self._executor is None or self._workers != workers:
                self._replace(workers)
            try:
                return self._executor.submit(decode_chunk, *chunk)
            except BrokenProcessPool:
                # a worker died in an earlier run of this process (killed, out of memory): start afresh
                self._replace(workers)
                return self._executor.submit(decode_chunk, *chunk)

    def _replace(self, workers: int) -> None:
        if self._executor is not None:
            # chunks submitted before still complete (another ingestion of this process may wait for them)
            self._executor.shutdown(wait=False)
        # spawn, not fork: the ingest process has librdkafka's and delta-rs's threads, whose locks a
        # forked child could inherit held
        self._executor = ProcessPoolExecutor(
            max_workers=workers, mp_context=get_context("spawn"), initializer=_start_worker, initargs=(os.getpid(),)
        )
        self._workers = workers


POOL = DecodePool()
