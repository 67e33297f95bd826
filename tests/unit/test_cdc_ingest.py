"""Kafka → bronze Delta against librdkafka's in-process mock cluster (a real Kafka protocol peer)."""

import json

import pytest
from confluent_kafka import Producer
from deltalake import DeltaTable

from pipelines.cdc.ingest import ingest_topic
from pipelines.settings import load_settings

CREATE = {
    "schema": None,
    "payload": {
        "before": None,
        "after": {"order_id": "x", "total_amount": "AMs="},
        "source": {"connector": "postgresql", "db": "shop", "schema": "public", "table": "orders", "lsn": 100, "txId": 7},
        "op": "c",
        "ts_ms": 1700000000000,
    },
}


@pytest.fixture()
def mock_kafka():
    producer = Producer({"test.mock.num.brokers": 1})
    bootstrap = ",".join(f"{b.host}:{b.port}" for b in producer.list_topics(timeout=10).brokers.values())
    yield producer, bootstrap


@pytest.fixture()
def settings(tmp_path, mock_kafka):
    _, bootstrap = mock_kafka
    return load_settings({"LAKEHOUSE_DATA_DIR": str(tmp_path), "LAKEHOUSE_KAFKA_BOOTSTRAP": bootstrap})


def _produce(producer, topic, n, start=0, poison_every=0):
    for i in range(start, start + n):
        value = json.dumps({**CREATE, "payload": {**CREATE["payload"], "source": {**CREATE["payload"]["source"], "lsn": i}}})
        if poison_every and i % poison_every == 0:
            value = b"\x00not json"
        producer.produce(topic, key=json.dumps({"order_id": str(i)}), value=value, partition=i % 2)
    producer.flush(10)


def _offsets(settings, table):
    rows = DeltaTable(settings.bronze_path(table)).to_pyarrow_table(columns=["partition", "offset"]).to_pylist()
    return sorted((r["partition"], r["offset"]) for r in rows)


def test_rerun_reads_only_new_records_and_never_duplicates(mock_kafka, settings):
    producer, _ = mock_kafka
    _produce(producer, "shop.public.orders", 100)
    first = ingest_topic(settings, "shop.public.orders", batch_size=30)
    assert first.records_read == 100 and first.bronze_rows == 100
    again = ingest_topic(settings, "shop.public.orders")
    assert again.records_read == 0
    _produce(producer, "shop.public.orders", 50, start=100)
    third = ingest_topic(settings, "shop.public.orders")
    assert third.records_read == 50
    offsets = _offsets(settings, "cdc_orders")
    assert len(offsets) == len(set(offsets)) == 150
    decoded = DeltaTable(settings.bronze_path("cdc_orders")).to_pyarrow_table(columns=["after", "lsn", "op"]).to_pylist()
    assert {r["op"] for r in decoded} == {"c"}
    assert json.loads(decoded[0]["after"])["total_amount"] == "AMs="  # no schema: bytes kept as sent


def test_undecodable_records_are_quarantined_and_counts_reconcile(mock_kafka, settings):
    producer, _ = mock_kafka
    _produce(producer, "shop.public.orders", 40, poison_every=10)
    result = ingest_topic(settings, "shop.public.orders", batch_size=7)
    assert result.records_read == 40
    assert (result.bronze_rows, result.quarantined) == (36, 4)
    quarantine = DeltaTable(settings.bronze_path("quarantine")).to_pyarrow_table().to_pylist()
    assert sorted(r["raw_value"] for r in quarantine) == [b"\x00not json"] * 4
    assert all("not valid JSON" in r["error"] for r in quarantine)


def test_follow_commits_new_records_within_the_latency_bound_and_stops_cleanly(mock_kafka, settings):
    import threading
    import time

    from pipelines.cdc.ingest import follow_topics

    producer, _ = mock_kafka
    _produce(producer, "shop.public.orders", 10)
    stop = threading.Event()
    results = []
    follower = threading.Thread(
        target=lambda: results.extend(follow_topics(settings, ["shop.public.orders"], max_latency=0.5, should_stop=stop.is_set))
    )
    follower.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if DeltaTable.is_deltatable(settings.bronze_path("cdc_orders")) and len(_offsets(settings, "cdc_orders")) == 10:
                break
            time.sleep(0.2)
        assert len(_offsets(settings, "cdc_orders")) == 10
        _produce(producer, "shop.public.orders", 5, start=10)
        produced_at = time.monotonic()
        while len(_offsets(settings, "cdc_orders")) < 15 and time.monotonic() - produced_at < 20:
            time.sleep(0.1)
        assert len(_offsets(settings, "cdc_orders")) == 15
    finally:
        stop.set()
        follower.join(30)
    assert not follower.is_alive()
    offsets = _offsets(settings, "cdc_orders")
    assert len(set(offsets)) == 15
    assert results[0].records_read == 15


def test_bronze_keeps_each_value_byte_for_byte_with_its_schema_stored_once(mock_kafka, settings):
    producer, _ = mock_kafka
    schema = {"type": "struct", "fields": [{"type": "struct", "optional": True, "field": "after",
                                            "fields": [{"type": "string", "field": "order_id"}]}]}
    values = []
    for i in range(20):
        payload = {**CREATE["payload"], "after": {"order_id": f"é{i}"}, "source": {**CREATE["payload"]["source"], "lsn": i}}
        values.append(json.dumps({"schema": schema, "payload": payload}, separators=(",", ":"), ensure_ascii=False).encode())
        producer.produce("shop.public.orders", value=values[-1], partition=i % 2)
    producer.produce("shop.public.orders", value=json.dumps(CREATE), partition=0)  # no schema
    producer.flush(10)
    assert ingest_topic(settings, "shop.public.orders", batch_size=6).bronze_rows == 21

    schemas = DeltaTable(settings.bronze_path("cdc_schemas")).to_pyarrow_table().to_pylist()
    assert len(schemas) == 1 and schemas[0]["topic"] == "shop.public.orders"
    prefix = schemas[0]["envelope_prefix"]
    rows = DeltaTable(settings.bronze_path("cdc_orders")).to_pyarrow_table().to_pylist()
    rebuilt = sorted(
        (prefix + r["raw_payload"] + "}").encode() if r["value_schema_id"] else r["raw_payload"].encode() for r in rows
    )
    assert rebuilt == sorted([*values, json.dumps(CREATE).encode()])
    assert {r["value_schema_id"] for r in rows} == {schemas[0]["schema_id"], None}
    assert sorted(json.loads(r["after"])["order_id"] for r in rows if r["value_schema_id"]) == sorted(f"é{i}" for i in range(20))


def test_a_batch_ends_at_max_batch_bytes_whatever_the_record_count(mock_kafka, settings, monkeypatch):
    from pipelines.cdc import ingest

    producer, _ = mock_kafka
    _produce(producer, "shop.public.orders", 40)
    record_bytes = len(json.dumps(CREATE))
    monkeypatch.setattr(ingest, "MAX_BATCH_BYTES", 10 * record_bytes)
    result = ingest_topic(settings, "shop.public.orders", batch_size=1_000)
    assert result.bronze_rows == 40
    assert result.commits == 4  # ~10 records per commit, although one consume call returned all 40
    assert len(set(_offsets(settings, "cdc_orders"))) == 40


def _follow_in_thread(settings, topics, stop):
    import threading

    from pipelines.cdc.ingest import follow_topics

    outcome = []

    def run():
        try:
            outcome.append(follow_topics(settings, topics, max_latency=0.3, should_stop=stop.is_set))
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    follower = threading.Thread(target=run)
    follower.start()
    return follower, outcome


def test_follow_over_several_topics_creates_the_shared_tables_without_conflicts(mock_kafka, settings):
    """Each topic commits from its own writer thread; on a fresh lake their first schema and quarantine
    commits race to create those shared tables, and delta-rs refuses the losers unless they retry."""
    import threading
    import time

    producer, _ = mock_kafka
    topics = [f"shop.public.{t}" for t in ("orders", "customers", "products", "payments")]
    schema = {"type": "struct", "fields": [{"type": "struct", "optional": True, "field": "after",
                                            "fields": [{"type": "int32", "field": "id"}]}]}
    for topic in topics:
        for i in range(5):
            payload = {**CREATE["payload"], "after": {"id": i}, "source": {**CREATE["payload"]["source"], "lsn": i}}
            value = json.dumps({"schema": schema, "payload": payload}, separators=(",", ":"))  # as JsonConverter
            producer.produce(topic, value=value, partition=0)
        producer.produce(topic, value=b"\x00poison", partition=0)
    producer.flush(10)

    stop = threading.Event()
    follower, outcome = _follow_in_thread(settings, topics, stop)
    deadline = time.monotonic() + 30
    while follower.is_alive() and time.monotonic() < deadline:
        tables = ("quarantine", "cdc_schemas", *(f"cdc_{t.rsplit('.', 1)[1]}" for t in topics))
        if all(DeltaTable.is_deltatable(settings.bronze_path(t)) for t in tables):
            quarantined = DeltaTable(settings.bronze_path("quarantine")).to_pyarrow_table(columns=["topic"])
            if quarantined.num_rows == len(topics):
                break
        time.sleep(0.2)
    stop.set()
    follower.join(30)
    results = outcome[0]
    assert not isinstance(results, Exception), results
    assert [(r.records_read, r.bronze_rows, r.quarantined) for r in results] == [(6, 5, 1)] * len(topics)
    assert sorted(DeltaTable(settings.bronze_path("quarantine")).to_pyarrow_table().column("topic").to_pylist()) == sorted(topics)
    assert sorted(DeltaTable(settings.bronze_path("cdc_schemas")).to_pyarrow_table().column("topic").to_pylist()) == sorted(topics)


def test_follow_stops_with_the_error_of_a_failed_commit_while_topics_are_quiet(mock_kafka, settings, monkeypatch):
    """A commit fails in the writer thread; nothing more arrives on that topic. The follower must not go
    on as if the records were stored until someone stops it."""
    import threading

    from pipelines.cdc import ingest

    def failing_commit(*args, **kwargs):
        raise OSError("lake unwritable")

    monkeypatch.setattr(ingest, "commit_batch_with_offsets", failing_commit)
    producer, _ = mock_kafka
    _produce(producer, "shop.public.orders", 3)
    stop = threading.Event()
    follower, outcome = _follow_in_thread(settings, ["shop.public.orders"], stop)
    follower.join(20)
    stopped_by_itself = not follower.is_alive()
    stop.set()
    follower.join(30)
    assert stopped_by_itself
    assert isinstance(outcome[0], OSError) and "lake unwritable" in str(outcome[0])


@pytest.mark.parametrize("other_run_commits", ["before this run's check", "between its check and its commit"])
def test_a_concurrent_run_of_the_same_topic_is_stopped_and_nothing_is_written_twice(
    mock_kafka, settings, monkeypatch, other_run_commits
):
    """Two runs of one topic at once (an overlapping schedule, a follower beside a Dagster run) read the
    same stored offsets. Whichever commits second must fail, not append the same records again."""
    from pipelines.cdc import ingest

    producer, _ = mock_kafka
    _produce(producer, "shop.public.orders", 40, poison_every=10)
    other_run = []

    def run_the_other_one_first():
        if not other_run:
            other_run.append("started")
            other_run.append(ingest_topic(settings, "shop.public.orders"))

    if other_run_commits == "before this run's check":
        real_failpoint = ingest.failpoint

        def failpoint(name):
            if name == "cdc.before_write":
                run_the_other_one_first()
            real_failpoint(name)

        monkeypatch.setattr(ingest, "failpoint", failpoint)
    else:
        real_check = ingest._table_at_expected_offsets

        def check_then_let_the_other_commit(*args):
            table = real_check(*args)
            run_the_other_one_first()
            return table

        monkeypatch.setattr(ingest, "_table_at_expected_offsets", check_then_let_the_other_commit)

    with pytest.raises(ingest.ConcurrentIngestError, match="another run committed"):
        ingest_topic(settings, "shop.public.orders")
    assert (other_run[1].bronze_rows, other_run[1].quarantined) == (36, 4)
    offsets = _offsets(settings, "cdc_orders")
    assert len(offsets) == len(set(offsets)) == 36
    quarantined = DeltaTable(settings.bronze_path("quarantine")).to_pyarrow_table(columns=["partition", "offset"])
    assert quarantined.num_rows == len(set(zip(*quarantined.to_pydict().values()))) == 4


def test_a_batch_in_flight_stopped_by_the_same_concurrent_run_logs_one_line(mock_kafka, settings, caplog):
    # a follower stopped by another run: its batch in flight fails for the same reason as the error
    # already on its way out, which the command prints; a traceback per topic would bury it
    from concurrent.futures import Future

    from confluent_kafka import Consumer

    from pipelines.cdc import ingest

    producer, bootstrap = mock_kafka
    _produce(producer, "shop.public.orders", 1)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "t"})
    ingestion = ingest.TopicIngestion(settings, "shop.public.orders", consumer, batch_size=10)
    failed = Future()
    failed.set_exception(ingest.ConcurrentIngestError("shop.public.orders: another run committed offsets"))
    ingestion._in_flight = failed
    ingestion.close(failing=True)
    consumer.close()
    (record,) = [r for r in caplog.records if "in flight" in r.getMessage()]
    assert record.levelname == "WARNING" and record.exc_info is None and "another run committed" in record.getMessage()


def test_two_runs_that_both_see_a_new_schema_store_it_once(settings, monkeypatch):
    """Overlapping runs of a topic both meet a schema the table does not hold. The other run stores it
    after ours read the schema table and before ours writes: ours must not add it a second time."""
    from datetime import datetime, timezone

    from pipelines.cdc import ingest
    from pipelines.shared_tables import commit_retrying_conflicts

    now = datetime.now(timezone.utc)
    batch = ingest._Batch(new_schemas={"a" * 64: b'{"schema":{"type":"struct"},"payload":'})
    real_open = ingest.open_or_create
    other_run = []

    def open_then_let_the_other_run_commit(path, *args, **kwargs):
        table = real_open(path, *args, **kwargs)
        if path.endswith("cdc_schemas") and not other_run:
            other_run.append(True)
            ingest._commit_schemas(settings, "shop.public.orders", batch, "other-run", now)
        return table

    monkeypatch.setattr(ingest, "open_or_create", open_then_let_the_other_run_commit)
    commit_retrying_conflicts(lambda: ingest._commit_schemas(settings, "shop.public.orders", batch, "our-run", now))
    rows = DeltaTable(settings.bronze_path("cdc_schemas")).to_pyarrow_table().to_pylist()
    assert [(r["schema_id"], r["ingest_batch_id"]) for r in rows] == [("a" * 64, "other-run")]


def test_a_decode_worker_killed_mid_run_costs_a_retry_not_the_run(mock_kafka, settings, monkeypatch):
    """The OOM killer or an operator kills the workers while a chunk waits for them: the chunk is decoded
    again in a fresh pool and the run completes the topic exactly once."""
    import os
    import signal

    from pipelines.cdc import ingest
    from pipelines.cdc.decode_workers import POOL

    producer, _ = mock_kafka
    _produce(producer, "shop.public.orders", 60)
    monkeypatch.setattr(ingest, "CONSUME_CHUNK", 4)
    submitted = []

    class KillingPool:
        def submit(self, workers, *chunk):
            submitted.append(chunk)
            if len(submitted) != 3:
                return POOL.submit(workers, *chunk)
            # stopped first, so the chunk certainly waits for a worker that then dies
            pids = [p.pid for p in POOL._executor._processes.values()]
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            future = POOL.submit(workers, *chunk)
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            return future

    monkeypatch.setattr(ingest, "POOL", KillingPool())
    result = ingest_topic(settings, "shop.public.orders", batch_size=8)
    assert result.records_read == result.bronze_rows == 60
    assert any(later[3] is submitted[2][3] for later in submitted[3:])  # the killed chunk went again
    offsets = _offsets(settings, "cdc_orders")
    assert len(offsets) == len(set(offsets)) == 60


def test_workers_that_die_on_every_try_stop_the_run_and_the_next_run_reads_its_records(mock_kafka, settings, monkeypatch):
    """A chunk no worker survives (killed twice): the run stops with a one-line error, commits nothing
    it has not decoded, and the next run completes the topic exactly once."""
    from dataclasses import replace

    from pipelines.cdc import ingest
    from pipelines.cdc.ingest import DecodeWorkerError

    producer, _ = mock_kafka
    _produce(producer, "shop.public.orders", 60)
    monkeypatch.setattr(ingest, "CONSUME_CHUNK", 4)
    # a pool of its own (another worker count), whose workers each die at their first chunk
    monkeypatch.setenv("LAKEHOUSE_FAILPOINTS", "cdc.decode_chunk:1")
    with pytest.raises(DecodeWorkerError, match="died twice on the same records"):
        ingest_topic(replace(settings, cdc_decode_workers=settings.cdc_decode_workers + 1), "shop.public.orders", batch_size=8)
    monkeypatch.delenv("LAKEHOUSE_FAILPOINTS")
    assert not DeltaTable.is_deltatable(settings.bronze_path("cdc_orders")) or _offsets(settings, "cdc_orders") == []
    again = ingest_topic(settings, "shop.public.orders")
    assert again.records_read == 60
    offsets = _offsets(settings, "cdc_orders")
    assert len(offsets) == len(set(offsets)) == 60


def test_a_schema_change_mid_topic_reaches_bronze_while_values_travel_without_their_prefix(mock_kafka, settings, monkeypatch):
    """Values go to the decode workers without the envelope prefix learned from earlier chunks; a value
    under a new schema has another prefix and travels whole. Both kinds land byte for byte."""
    from pipelines.cdc import ingest

    producer, _ = mock_kafka
    narrow = {"type": "struct", "fields": [{"type": "struct", "optional": True, "field": "after",
                                            "fields": [{"type": "string", "field": "order_id"}]}]}
    wide = {"type": "struct", "fields": [{"type": "struct", "optional": True, "field": "after",
                                          "fields": [{"type": "string", "field": "order_id"},
                                                     {"type": "int32", "optional": True, "field": "priority"}]}]}
    values = []
    for i in range(60):
        after = {"order_id": f"o{i}", **({"priority": i} if i >= 30 else {})}
        payload = {**CREATE["payload"], "after": after, "source": {**CREATE["payload"]["source"], "lsn": i}}
        values.append(json.dumps({"schema": narrow if i < 30 else wide, "payload": payload}, separators=(",", ":")).encode())
        producer.produce("shop.public.orders", value=values[-1], partition=0)
    producer.flush(10)
    monkeypatch.setattr(ingest, "CONSUME_CHUNK", 3)
    sent_stripped = []

    def strip_prefix(value, prefix):
        stripped = ingest_strip_prefix(value, prefix)
        sent_stripped.append(stripped[1])
        return stripped

    ingest_strip_prefix = ingest.strip_prefix
    monkeypatch.setattr(ingest, "strip_prefix", strip_prefix)
    assert ingest_topic(settings, "shop.public.orders", batch_size=12).bronze_rows == 60
    assert any(sent_stripped[:30]) and any(sent_stripped[30:]) and not all(sent_stripped[30:])

    prefixes = {r["schema_id"]: r["envelope_prefix"]
                for r in DeltaTable(settings.bronze_path("cdc_schemas")).to_pyarrow_table().to_pylist()}
    assert len(prefixes) == 2
    rows = sorted(DeltaTable(settings.bronze_path("cdc_orders")).to_pyarrow_table().to_pylist(), key=lambda r: r["offset"])
    assert [(prefixes[r["value_schema_id"]] + r["raw_payload"] + "}").encode() for r in rows] == values
    assert [json.loads(r["after"]).get("priority") for r in rows] == [None] * 30 + list(range(30, 60))
