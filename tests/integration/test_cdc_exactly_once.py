"""Kafka → bronze exactly once, against the local stack's real broker: crashes, redelivery, poison, schema change.

Isolation: every test produces to its own new topics (`<unique>.public.orders`, several partitions) and
ingests into its own lake under tmp_path, so the stack's `shop.*` topics and lake stay untouched.
Truth: the (partition, offset) of every record as the broker acknowledged it to our producer, and the
values we built ourselves; never the ingest's own counters or stored offsets.
Events are real Debezium events of the stack (tests/fixtures/local, JsonConverter with schemas) with
their row, key and source position varied.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from pipelines.cdc.ingest import ingest_topic

pytestmark = pytest.mark.stack

PROJECT_DIR = Path(__file__).resolve().parents[2]
# an insert into public.orders as captured from the stack's Debezium
TEMPLATE = json.loads((PROJECT_DIR / "tests/fixtures/local/pg_shop_orders_c.value.json").read_text())
KEY_SCHEMA = {
    "type": "struct",
    "fields": [
        {"type": "string", "optional": False, "name": "io.debezium.data.Uuid", "version": 1, "field": "order_id"}
    ],
    "optional": False,
    "name": "shop.public.orders.Key",
}
BIG = 5 * 1024 * 1024
TOPIC_MAX_BYTES = 10 * 1024 * 1024


# --- building events ------------------------------------------------------------------------------


def _decimal(cents: int) -> str:
    """Kafka Connect Decimal: big-endian two's complement of the unscaled value, base64."""
    return base64.b64encode(cents.to_bytes(cents.bit_length() // 8 + 1, "big", signed=True)).decode()


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _order_id(i: int) -> str:
    return str(uuid.UUID(int=i + 1))


def _order_event(i: int, *, lsn: int | None = None, ts_ms: int | None = None, schema: dict | None = None,
                 extra: dict | None = None, created_by: str = "t") -> tuple[bytes, bytes]:
    """(key, value) of a Postgres insert into public.orders as our stack's Debezium writes it."""
    lsn = 30_000_000 + 100 * i if lsn is None else lsn
    tx = 1_000 + i
    payload = copy.copy(TEMPLATE["payload"])
    payload["after"] = {
        **TEMPLATE["payload"]["after"],
        "order_id": _order_id(i),
        "subtotal": _decimal(1000 + i),
        "total_amount": _decimal(1125 + i),
        "created_by": created_by,
        **(extra or {}),
    }
    payload["source"] = {**TEMPLATE["payload"]["source"], "lsn": lsn, "txId": tx,
                         "sequence": json.dumps([str(lsn), str(lsn)])}
    payload["transaction"] = {"id": f"{tx}:{lsn}", "total_order": 1, "data_collection_order": 1}
    payload["ts_ms"] = 1_795_721_709_725 + i if ts_ms is None else ts_ms
    value = {"schema": TEMPLATE["schema"] if schema is None else schema, "payload": payload}
    key = {"schema": KEY_SCHEMA, "payload": {"order_id": _order_id(i)}}
    return json.dumps(key).encode(), json.dumps(value).encode()


def _with_new_columns(schema: dict, columns: list[dict]) -> dict:
    """The envelope schema after `ALTER TABLE orders ADD COLUMN ...`: before and after rows gain the fields."""
    changed = copy.deepcopy(schema)
    for envelope_field in changed["fields"]:
        if envelope_field["field"] in ("before", "after"):
            envelope_field["fields"].extend(copy.deepcopy(columns))
    return changed


# --- Kafka and the lake ---------------------------------------------------------------------------


class Topics:
    """Creates this test's own topics on the stack's broker and deletes them afterwards."""

    def __init__(self, settings):
        self.admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
        self.created: list[str] = []

    def create(self, partitions: int = 3, config: dict | None = None) -> str:
        topic = f"eo{uuid.uuid4().hex[:10]}.public.orders"
        futures = self.admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})]
        )
        futures[topic].result(timeout=30)
        self.created.append(topic)
        deadline = time.monotonic() + 30
        while True:  # metadata of every partition with a leader before we produce
            meta = self.admin.list_topics(topic, timeout=10).topics.get(topic)
            if meta is not None and meta.error is None and len(meta.partitions) == partitions and all(
                p.leader >= 0 for p in meta.partitions.values()
            ):
                return topic
            assert time.monotonic() < deadline, f"topic {topic} did not become ready"
            time.sleep(0.2)

    def delete_all(self) -> None:
        if self.created:
            for future in self.admin.delete_topics(self.created, operation_timeout=30).values():
                future.result(timeout=60)


@pytest.fixture()
def topics(stack):
    made = Topics(stack)
    yield made
    made.delete_all()


@pytest.fixture()
def lake(stack, tmp_path):
    """Settings of the stack with a lake of this test's own."""
    return replace(stack, lake_root=str(tmp_path / "lake"), data_dir=tmp_path)


class Produced:
    """What the broker acknowledged: (partition, offset) of every record, keyed by our label for it."""

    def __init__(self):
        self.where: dict[str, tuple[int, int]] = {}
        self.errors: list[str] = []

    def by_partition(self) -> dict[int, set[int]]:
        found = defaultdict(set)
        for partition, offset in self.where.values():
            found[partition].add(offset)
        return found


def _produce(settings, topic: str, records, partitions: int = 3) -> Produced:
    """records: iterable of (label, key, value); record i goes to partition i % partitions."""
    produced = Produced()
    producer = Producer({
        "bootstrap.servers": settings.kafka_bootstrap,
        "message.max.bytes": TOPIC_MAX_BYTES,
        "linger.ms": 20,
        "enable.idempotence": True,  # no retry duplicates: the producer's offsets are the whole truth
    })
    for i, (label, key, value) in enumerate(records):

        def report(err, msg, label=label):
            if err is not None:
                produced.errors.append(f"{label}: {err}")
            else:
                produced.where[label] = (msg.partition(), msg.offset())

        while True:
            try:
                producer.produce(topic, key=key, value=value, partition=i % partitions, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    try:
        assert producer.flush(60) == 0
    finally:
        producer.close()
    assert produced.errors == []
    return produced


def _orders(n: int, poison_every: int = 0, start: int = 0):
    """n order inserts, every `poison_every`-th one replaced by a value that is not JSON."""
    for i in range(start, start + n):
        if poison_every and i % poison_every == poison_every - 1:
            yield f"poison-{i}", None, b'{"schema": {"type": "struct"}, "payload": {"op": "c", "after": {'
        else:
            key, value = _order_event(i)
            yield f"order-{i}", key, value


def _rows(path: str, columns: list[str]) -> list[dict]:
    try:
        return DeltaTable(path).to_pyarrow_table(columns=columns).to_pylist()
    except TableNotFoundError:  # nothing committed yet
        return []


def _positions(settings, topic: str, table: str) -> Counter:
    """Counter of (partition, offset) over the rows of `table` (bronze/<table>) that came from `topic`."""
    rows = _rows(settings.bronze_path(table), ["topic", "partition", "offset"])
    return Counter((r["partition"], r["offset"]) for r in rows if r["topic"] == topic)


def _assert_exactly_once(settings, topic: str, produced: Produced, poison_labels: set[str]) -> None:
    bronze = _positions(settings, topic, "cdc_orders")
    quarantine = _positions(settings, topic, "quarantine")
    assert [p for p, n in bronze.items() if n > 1] == [], "records twice in bronze"
    assert [p for p, n in quarantine.items() if n > 1] == [], "records twice in quarantine"
    assert set(bronze) & set(quarantine) == set(), "records both in bronze and in quarantine"
    expected = produced.by_partition()
    for partition, offsets in expected.items():
        assert offsets == set(range(len(offsets))), "a fresh topic's offsets are 0..n-1"
        held = {o for p, o in (*bronze, *quarantine) if p == partition}
        assert held == offsets, (partition, sorted(offsets - held)[:10], sorted(held - offsets)[:10])
    assert sum(bronze.values()) + sum(quarantine.values()) == len(produced.where)
    assert set(quarantine) == {produced.where[label] for label in poison_labels}


def _assert_prefixes(settings, topic: str) -> None:
    """Whatever moment a crash hit: per partition, bronze holds the offsets from 0 up to where it got, once
    each, but for the quarantined ones (the quarantine may be one batch ahead)."""
    bronze = _positions(settings, topic, "cdc_orders")
    assert [p for p, n in bronze.items() if n > 1] == []
    quarantine = _positions(settings, topic, "quarantine")
    assert [p for p, n in quarantine.items() if n > 1] == []
    by_partition = defaultdict(set)
    for partition, offset in bronze:
        by_partition[partition].add(offset)
    for partition, offsets in by_partition.items():
        top = max(offsets)
        missing = set(range(top + 1)) - offsets
        assert {(partition, o) for o in missing} <= set(quarantine), (partition, sorted(missing)[:10])


# --- running ingestion as its own process -----------------------------------------------------------

INGEST = """
import json, sys
from pipelines.cdc.ingest import ingest_topic
from pipelines.settings import load_settings
r = ingest_topic(load_settings(), sys.argv[1], batch_size=int(sys.argv[2]))
print(json.dumps({"read": r.records_read, "bronze": r.bronze_rows, "quarantined": r.quarantined}))
"""


def _ingest_env(settings, failpoints: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
    env.update({
        "LAKEHOUSE_DATA_DIR": str(settings.data_dir),
        "LAKEHOUSE_LAKE_ROOT": settings.lake_root,
        "LAKEHOUSE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
    })
    if failpoints:
        env["LAKEHOUSE_FAILPOINTS"] = failpoints
    return env


def _start_ingest(settings, topic: str, batch_size: int, failpoints: str | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", INGEST, topic, str(batch_size)],
        cwd=PROJECT_DIR,
        env=_ingest_env(settings, failpoints),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run_ingest(settings, topic: str, batch_size: int, failpoints: str | None = None) -> subprocess.CompletedProcess:
    proc = _start_ingest(settings, topic, batch_size, failpoints)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _assert_killed(run: subprocess.CompletedProcess) -> None:
    assert run.returncode == -signal.SIGKILL, (run.returncode, run.stderr[-2000:])


def _assert_finished(run: subprocess.CompletedProcess) -> dict:
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


# --- crashes at the failpoints ----------------------------------------------------------------------

CRASH_EVENTS, CRASH_POISON_EVERY, CRASH_BATCH = 5_000, 97, 250  # 20 batches, each with 2-3 poison records


@dataclass
class AfterCrash:
    bronze: Counter  # (partition, offset) → rows
    quarantine: Counter
    bronze_commits: int  # commits of rows to the bronze Delta table


def _bronze_commits(settings) -> int:
    try:
        history = DeltaTable(settings.bronze_path("cdc_orders")).history()
    except TableNotFoundError:
        return 0
    return sum(1 for commit in history if commit["operation"] != "CREATE TABLE")  # created empty, then written


def _crash_and_restart(lake, topics, failpoint: str, counts: list[int]) -> list[AfterCrash]:
    """Ingest in a process that dies at the k-th pass of `failpoint`, once per k (each run resumes from
    the last), then once to the end; bronze ∪ quarantine must then hold every offset exactly once."""
    topic = topics.create(partitions=3)
    produced = _produce(lake, topic, _orders(CRASH_EVENTS, poison_every=CRASH_POISON_EVERY))
    poison = {label for label in produced.where if label.startswith("poison-")}
    states = []
    for k in counts:
        _assert_killed(_run_ingest(lake, topic, CRASH_BATCH, failpoints=f"{failpoint}:{k}"))
        _assert_prefixes(lake, topic)
        states.append(AfterCrash(
            _positions(lake, topic, "cdc_orders"), _positions(lake, topic, "quarantine"), _bronze_commits(lake)
        ))
    _assert_finished(_run_ingest(lake, topic, CRASH_BATCH))
    _assert_exactly_once(lake, topic, produced, poison)
    return states


def test_sigkill_before_write_loses_nothing(lake, topics):
    first, second = _crash_and_restart(lake, topics, "cdc.before_write", [6, 5])
    # each run died before its k-th write, so k-1 of its batches were committed; the restart had
    # the lost batch and the rest to read again
    assert (first.bronze_commits, second.bronze_commits) == (5, 5 + 4)
    assert 0 < len(first.bronze) < len(second.bronze) < CRASH_EVENTS


def test_sigkill_after_quarantine_commit_before_bronze_commit_duplicates_nothing(lake, topics):
    states = _crash_and_restart(lake, topics, "cdc.after_quarantine_commit", [7, 4])
    for state in states:
        # the crash really fell between the two commits: quarantine holds records past bronze's end
        bronze_end = defaultdict(lambda: -1)
        for partition, offset in state.bronze:
            bronze_end[partition] = max(bronze_end[partition], offset)
        assert any(offset > bronze_end[partition] for partition, offset in state.quarantine)


def test_sigkill_after_commit_duplicates_nothing(lake, topics):
    first, second = _crash_and_restart(lake, topics, "cdc.after_commit", [8, 1])
    # each run died right after its k-th commit: that batch is in bronze and the restart must skip it
    assert (first.bronze_commits, second.bronze_commits) == (8, 8 + 1)
    assert 0 < len(first.bronze) < len(second.bronze) < CRASH_EVENTS


# --- crashes at random moments, inside delta-rs writes too ----------------------------------------------

LONG_EVENTS, LONG_POISON_EVERY, LONG_BATCH = 50_000, 1_009, 2_000


def _parquet_files_on_disk(path: str) -> dict[str, Path]:
    """Data files by name (delta-rs names them by a fresh UUID), wherever they are in the partition folders."""
    return {p.name: p for p in Path(path).rglob("*.parquet")}


def _kill_when_a_data_file_appears(proc: subprocess.Popen, path: str, timeout: float = 60) -> bool:
    """SIGKILL `proc` the moment a new data file is complete in `path` (delta-rs renames it into place
    only when written), i.e. between a write and its commit; False if the process ended first."""
    known = set(_parquet_files_on_disk(path))
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if set(_parquet_files_on_disk(path)) - known:
            proc.send_signal(signal.SIGKILL)
            return True
        assert time.monotonic() < deadline, "no data file written"
        time.sleep(0.0005)
    return False


def _orphans(path: str) -> set[str]:
    """Data files on disk that no commit of the table references."""
    if not Path(path, "_delta_log").exists():
        return set(_parquet_files_on_disk(path))
    return set(_parquet_files_on_disk(path)) - {uri.rsplit("/", 1)[-1] for uri in DeltaTable(path).file_uris()}


def _kill_after(proc: subprocess.Popen, delay: float) -> bool:
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        return True


def test_sigkill_at_random_moments_of_a_long_ingest_keeps_every_offset_exactly_once(lake, topics):
    topic = topics.create(partitions=3)
    produced = _produce(lake, topic, _orders(LONG_EVENTS, poison_every=LONG_POISON_EVERY))
    poison = {label for label in produced.where if label.startswith("poison-")}
    path = lake.bronze_path("cdc_orders")
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    # A full run takes ~6 s here: random kills from start-up to mid-run (each run resumes where the last
    # commit left it, so they spread over the whole topic), and kills right after a data file is written.
    # delta-rs commits quickly after writing: such a kill can miss the window (p ~ 1/3 here), so up to 10
    # more follow until one has left an orphaned data file.
    plan = [rng.uniform(0.2, 2.0) for _ in range(5)] + ["data file"] * 3
    rng.shuffle(plan)
    plan += ["data file if no orphan yet"] * 10
    kills = 0
    for kill in plan:
        if kill == "data file if no orphan yet" and _orphans(path):
            break
        proc = _start_ingest(lake, topic, LONG_BATCH)
        killed = _kill_after(proc, kill) if isinstance(kill, float) else _kill_when_a_data_file_appears(proc, path)
        out, err = proc.communicate(timeout=120)
        run = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        if not killed or run.returncode == 0:
            break  # the ingest was done before this kill
        _assert_killed(run)
        kills += 1
        _assert_prefixes(lake, topic)
    _assert_finished(_run_ingest(lake, topic, LONG_BATCH))
    assert kills >= 4, f"seed {seed}: the ingest finished after {kills} kills"
    _assert_exactly_once(lake, topic, produced, poison)

    # readers see exactly the committed rows, whatever data files the killed writes left behind
    table = DeltaTable(path)
    referenced = {uri.rsplit("/", 1)[-1] for uri in table.file_uris()}
    on_disk = _parquet_files_on_disk(path)
    orphans = _orphans(path)
    assert referenced <= set(on_disk)
    assert orphans, f"seed {seed}: no kill landed between a data file's write and its commit"
    rows_in = {name: pq.ParquetFile(file).metadata.num_rows for name, file in on_disk.items()}
    committed_rows = LONG_EVENTS - len(poison)
    assert sum(rows_in[name] for name in orphans) > 0
    assert sum(rows_in[name] for name in referenced) == committed_rows
    assert table.to_pyarrow_table(columns=["offset"]).num_rows == committed_rows
    dataset = table.to_pyarrow_dataset()  # noqa: F841 (read by duckdb's replacement scan)
    with duckdb.connect() as conn:
        assert conn.sql('select count(*), count(distinct ("partition", "offset")) from dataset').fetchone() == (
            committed_rows, committed_rows,
        )
    print(f"seed {seed}: {kills} kills, {len(orphans)} orphaned data files invisible to readers")


# --- redelivery ----------------------------------------------------------------------------------------


def test_a_redelivered_change_is_kept_twice_with_the_same_source_position(lake, topics):
    topic = topics.create(partitions=1)
    # a connector restart replays from an older LSN: change 3 arrives again after change 5, re-emitted later
    # (another ts_ms) but from the same place in the WAL
    events = [(f"order-{i}", *_order_event(i)) for i in range(6)]
    replay = ("replay-3", *_order_event(3, ts_ms=1_795_721_999_999))
    assert replay[2] != events[3][2]
    produced = _produce(lake, topic, [*events, replay], partitions=1)
    result = ingest_topic(lake, topic, batch_size=100)
    assert (result.records_read, result.bronze_rows, result.quarantined) == (7, 7, 0)

    columns = ["offset", "lsn", "tx_id", "source_table", "record_key", "raw_payload"]
    rows = _rows(lake.bronze_path("cdc_orders"), columns)
    by_offset = {r["offset"]: r for r in rows}
    assert sorted(by_offset) == list(range(7))
    first, again = by_offset[produced.where["order-3"][1]], by_offset[produced.where["replay-3"][1]]
    assert first["raw_payload"] == events[3][2].decode() and again["raw_payload"] == replay[2].decode()
    position = ("30000300", "1003:30000300", "orders", {"order_id": _order_id(3)})
    for row in (first, again):
        assert (row["lsn"], row["tx_id"], row["source_table"], json.loads(row["record_key"])) == position

    arrow = DeltaTable(lake.bronze_path("cdc_orders")).to_pyarrow_table()  # noqa: F841 (duckdb scan)
    repeats = duckdb.sql(
        "select lsn, tx_id, source_table, record_key, list(\"offset\" order by \"offset\") from arrow"
        " group by all having count(*) > 1"
    ).fetchall()
    assert [(r[0], r[1], r[2], json.loads(r[3]), r[4]) for r in repeats] == [
        (*position, [produced.where["order-3"][1], produced.where["replay-3"][1]])
    ]


# --- poison messages ---------------------------------------------------------------------------------


def _big_valid_event() -> tuple[bytes, bytes]:
    key, value = _order_event(900, created_by="x" * BIG)
    assert len(value) > BIG
    return key, value


# label → words the quarantine reason must contain
POISON_REASONS = {
    "invalid-json": "not valid JSON",
    "unknown-op": "unknown op 'x'",
    "no-op": "no 'op'",
    "binary": "not UTF-8",
    "big-garbage": "not UTF-8",
}


def _poison_values() -> dict[str, bytes]:
    unknown_op = json.loads(_order_event(901)[1])
    unknown_op["payload"]["op"] = "x"
    no_op = json.loads(_order_event(902)[1])
    no_op["payload"] = {"before": None, "after": None, "source": {}}
    return {
        "invalid-json": b'{"schema": null, "payload": {"op": "c", "after": {"order_id": ',
        "unknown-op": json.dumps(unknown_op).encode(),
        "no-op": json.dumps(no_op).encode(),
        # e.g. an Avro record in Confluent's wire format (magic byte 0, schema id) from a misconfigured producer
        "binary": b"\x00\x00\x00\x00\x07" + random.Random(7).randbytes(200) + b"\xff\xfe",
        "big-garbage": b"\xff" + random.Random(5).randbytes(BIG),
    }


def _quarantined_by_position(settings, topic) -> dict[tuple[int, int], dict]:
    columns = ["topic", "partition", "offset", "raw_key", "raw_value", "error", "location"]
    rows = _rows(settings.bronze_path("quarantine"), columns)
    return {(r["partition"], r["offset"]): r for r in rows if r["topic"] == topic}


def test_poison_messages_are_quarantined_with_their_bytes_and_a_reason_and_nothing_else_is_lost(lake, topics):
    topic = topics.create(partitions=3, config={"max.message.bytes": str(TOPIC_MAX_BYTES)})
    values = _poison_values()
    good = [(f"order-{i}", *_order_event(i)) for i in range(30)]
    big_key, big_value = _big_valid_event()
    rest = iter(good[10:])
    records = list(good[:10])
    keys = {label: _order_event(800 + n)[0] for n, label in enumerate(values)}  # valid keys: the values are bad
    for label, value in values.items():  # poison among good records, on every partition
        records += [(label, keys[label], value), next(rest), next(rest)]
    records.append(("order-big", big_key, big_value))
    records.extend(rest)
    produced = _produce(lake, topic, records)
    assert len(produced.where) == len(records) == 30 + len(values) + 1

    result = ingest_topic(lake, topic, batch_size=8)

    quarantined = _quarantined_by_position(lake, topic)
    for label, value in values.items():
        partition, offset = produced.where[label]
        row = quarantined.pop((partition, offset))
        assert row["raw_value"] == value, label
        assert row["raw_key"] == keys[label], label
        assert POISON_REASONS[label] in row["error"], (label, row["error"])
        assert row["location"] == f"{topic}/{partition}/{offset}"
    assert quarantined == {}, "only the poison is quarantined"

    columns = ["topic", "partition", "offset", "record_key", "after", "raw_payload"]
    bronze = _rows(lake.bronze_path("cdc_orders"), columns)
    by_position = {(r["partition"], r["offset"]): r for r in bronze if r["topic"] == topic}
    good_labels = [label for label, _, _ in records if label.startswith("order-")]
    assert sorted(by_position) == sorted(produced.where[label] for label in good_labels)
    for label, key, value in records:
        if label.startswith("order-"):
            row = by_position[produced.where[label]]
            assert row["raw_payload"] == value.decode(), label
            assert json.loads(row["record_key"]) == json.loads(key)["payload"]
    big = by_position[produced.where["order-big"]]
    assert json.loads(big["after"])["created_by"] == "x" * BIG
    # counts reconcile: records read = bronze rows + quarantined rows, and both are what the tables hold
    assert result.records_read == len(records) == len(by_position) + len(values)
    assert (result.bronze_rows, result.quarantined) == (len(by_position), len(values))


NOT_EVENTS = [
    # valid JSON, but neither an envelope nor an event: no schema/payload, no op
    pytest.param(b'{"foo": 1}', id="no-payload-no-op"),
    # a JsonConverter document that lost its payload
    pytest.param(json.dumps({"schema": TEMPLATE["schema"]}).encode(), id="schema-without-payload"),
    # a null payload under the non-optional Envelope schema: JsonConverter cannot write this (a tombstone is
    # a null Kafka value, or {"schema": null, "payload": null} as some tools show it)
    pytest.param(json.dumps({"schema": TEMPLATE["schema"], "payload": None}).encode(),
                 id="null-payload-required-schema"),
    # an event that lost the schema half of its envelope: not a row with a column "payload"
    pytest.param(json.dumps({"payload": TEMPLATE["payload"]}).encode(), id="payload-without-schema"),
]


@pytest.mark.parametrize("value", NOT_EVENTS)
def test_json_documents_that_are_not_debezium_events_are_quarantined(lake, topics, value):
    """Our stack's topics carry JsonConverter envelopes ({"schema", "payload"} around an event with `op`)."""
    topic = topics.create(partitions=1)
    key = _order_event(999)[0]  # every record of a table topic has the row's key; the value is what is wrong
    records = [("order-0", *_order_event(0)), ("not-an-event", key, value), ("order-1", *_order_event(1))]
    produced = _produce(lake, topic, records, partitions=1)

    result = ingest_topic(lake, topic, batch_size=100)

    quarantined = _quarantined_by_position(lake, topic)
    assert list(quarantined) == [produced.where["not-an-event"]]
    row = quarantined[produced.where["not-an-event"]]
    assert (row["raw_key"], row["raw_value"]) == (key, value)
    assert row["error"]
    assert set(_positions(lake, topic, "cdc_orders")) == {produced.where["order-0"], produced.where["order-1"]}
    assert result.records_read == 3


# --- schema change -----------------------------------------------------------------------------------


def test_a_column_added_to_the_source_table_mid_stream_reaches_bronze_without_quarantine(lake, topics):
    topic = topics.create(partitions=2)
    # `ALTER TABLE orders ADD COLUMN gift_message text, ADD COLUMN gift_wrap_fee numeric(12,2)` between
    # order 19 and order 20: Debezium's schema for the later events carries the new columns
    new_columns = [
        {"type": "string", "optional": True, "field": "gift_message"},
        {"type": "bytes", "optional": True, "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
         "parameters": {"scale": "2", "connect.decimal.precision": "12"}, "field": "gift_wrap_fee"},
    ]
    altered = _with_new_columns(TEMPLATE["schema"], new_columns)
    records = [(f"order-{i}", *_order_event(i)) for i in range(20)]
    records += [
        (f"order-{i}", *_order_event(i, schema=altered, extra={"gift_message": f"happy {i}",
                                                               "gift_wrap_fee": _decimal(350 + i)}))
        for i in range(20, 40)
    ]
    produced = _produce(lake, topic, records, partitions=2)

    result = ingest_topic(lake, topic, batch_size=7)  # batches straddle the change

    assert (result.records_read, result.bronze_rows, result.quarantined) == (40, 40, 0)
    assert _quarantined_by_position(lake, topic) == {}
    rows = _rows(lake.bronze_path("cdc_orders"), ["partition", "offset", "after"])
    after = {(r["partition"], r["offset"]): json.loads(r["after"]) for r in rows}
    for i in range(40):
        row = after[produced.where[f"order-{i}"]]
        assert row["order_id"] == _order_id(i)
        assert row["subtotal"] == _money(1000 + i)
        if i < 20:
            assert "gift_message" not in row and "gift_wrap_fee" not in row
        else:
            assert row["gift_message"] == f"happy {i}"
            assert row["gift_wrap_fee"] == _money(350 + i)
