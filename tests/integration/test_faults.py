"""Component faults on the real local stack: a broker restart under `lakehouse ingest cdc` (batch and
--follow), Kafka Connect SIGKILLed, Postgres crashed during the workload, S3 gone during a bronze/events
run. Faults are injected only through the stack's public API (Stack.stop/start/restart).

Truth, never the pipeline's own counters: the (partition, offset) the broker acknowledged to our
producer; the bytes of every S3 object we uploaded; for gold, the oracle (SQL on Postgres, the funnel
from the S3 objects), as in tests/e2e.

Isolation: the Kafka tests write their own topics (a topic prefix of their own) into a lake of their own;
the S3 test runs a private moto (a stopped moto loses its objects, which would take the session's with
it). The Connect and Postgres tests fault the session stack and check the session lake against the
oracle of the whole database, as tests/e2e does; a fixture brings every component back whatever happens.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl
import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from pipelines.analyst import open_lake
from pipelines.cdc.ingest import BROKER_TIMEOUT, CDC_STREAMS, SOURCE_TABLES, bronze_table_name, topic_for
from pipelines.run import materialize_all
from pipelines.settings import load_settings
from pipelines.stack import Stack
from pipelines.stack.capture import wait_until_captured
from pipelines.workload.writer import run_workload
from tests.e2e.test_walking_skeleton import _assert_gold_equals_the_oracle
from tests.integration.test_cdc_exactly_once import _orders, _produce
from tests.integration.test_events_s3 import Bucket, assert_exactly_once, event, jsonl

pytestmark = pytest.mark.stack

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def components(stack):
    """The session stack's public controls; every component healthy again afterwards, pass or fail."""
    controls = Stack(stack)
    yield controls
    controls.up()


# --- Kafka broker restarts under `lakehouse ingest cdc` --------------------------------------------------


class OwnTopics:
    """Every CDC stream's topic under a prefix of this test's own, so that `lakehouse ingest cdc` reads
    only what this test produced (orders in 3 partitions, the other streams empty)."""

    def __init__(self, settings, tmp_path: Path):
        self.prefix = f"fault{uuid.uuid4().hex[:8]}"
        self.settings = replace(settings, topic_prefix=self.prefix, lake_root=str(tmp_path / "lake"))
        self.admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
        self.topics = [topic_for(self.settings, s) for s in CDC_STREAMS]
        self.orders = topic_for(self.settings, "orders")
        new = [NewTopic(t, num_partitions=3 if t == self.orders else 1, replication_factor=1) for t in self.topics]
        for future in self.admin.create_topics(new).values():
            future.result(timeout=30)
        deadline = time.monotonic() + 30
        while not all(self._ready(t) for t in self.topics):
            assert time.monotonic() < deadline, "topics did not become ready"
            time.sleep(0.2)
        self.produced: dict[str, tuple[int, int]] = {}

    def _ready(self, topic: str) -> bool:
        meta = self.admin.list_topics(topic, timeout=10).topics.get(topic)
        return meta is not None and meta.error is None and all(p.leader >= 0 for p in meta.partitions.values())

    def produce(self, n: int, start: int = 0) -> None:
        self.produced.update(_produce(self.settings, self.orders, _orders(n, start=start)).where)

    def delete(self) -> None:
        for future in self.admin.delete_topics(self.topics, operation_timeout=30).values():
            future.result(timeout=60)

    def env(self, lake_root: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
        env.update(LAKEHOUSE_DATA_DIR=str(self.settings.data_dir), LAKEHOUSE_TOPIC_PREFIX=self.prefix,
                   LAKEHOUSE_LAKE_ROOT=lake_root or self.settings.lake_root)
        return env

    def ingest(self, *args: str, lake_root: str | None = None) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "pipelines.cli", "ingest", "cdc", *args], cwd=PROJECT,
                                env=self.env(lake_root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def bronze(self) -> Counter:
        """(partition, offset) → rows in this test's bronze/cdc_orders."""
        try:
            rows = DeltaTable(self.settings.bronze_path("cdc_orders")).to_pyarrow_table(
                columns=["partition", "offset"]).to_pylist()
        except TableNotFoundError:
            return Counter()
        return Counter((r["partition"], r["offset"]) for r in rows)

    def assert_every_offset_once(self) -> None:
        held = self.bronze()
        assert [p for p, n in held.items() if n > 1] == [], "offsets twice in bronze"
        assert set(held) == set(self.produced.values()), (len(held), len(self.produced))


@pytest.fixture
def own_topics(stack, tmp_path):
    topics = OwnTopics(stack, tmp_path)
    yield topics
    topics.delete()


def _finish(proc: subprocess.Popen, timeout: float = 180) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _started_ingest_at_half_time(own_topics: OwnTopics, tmp_path: Path) -> subprocess.Popen:
    """The ingest, started so that a fault injected now lands in its middle: a first run into a scratch
    lake measures how long a whole run takes, and we return after half of it."""
    started = time.monotonic()
    code, _, err = _finish(own_topics.ingest(lake_root=str(tmp_path / "scratch")))
    assert code == 0, err[-2000:]
    full_run = time.monotonic() - started
    proc = own_topics.ingest()
    time.sleep(full_run / 2)
    assert proc.poll() is None, "the ingest ended before the fault: produce more records"
    return proc


def test_batch_ingest_waits_out_a_broker_restart_and_every_offset_lands_once(components, own_topics, tmp_path):
    own_topics.produce(20_000)
    proc = _started_ingest_at_half_time(own_topics, tmp_path)
    down = time.monotonic()
    components.restart("kafka")  # a few seconds without a broker, well within the ingest's patience
    assert time.monotonic() - down < BROKER_TIMEOUT
    code, out, err = _finish(proc)
    assert code == 0, err[-2000:]
    assert "Traceback" not in err
    own_topics.assert_every_offset_once()
    # a rerun has nothing left to read
    code, out, err = _finish(own_topics.ingest())
    assert code == 0 and f"{own_topics.orders}: read 0," in out, (out, err[-2000:])
    own_topics.assert_every_offset_once()


def test_batch_ingest_stops_with_one_line_when_the_broker_stays_away_and_a_rerun_completes(
    components, own_topics, tmp_path
):
    """It waited silently forever before (a hang of `lakehouse ingest cdc`)."""
    own_topics.produce(20_000)
    proc = _started_ingest_at_half_time(own_topics, tmp_path)
    components.stop("kafka")  # politely: a SIGKILLed broker recovers its logs for 15 s at start
    try:
        code, out, err = _finish(proc, timeout=BROKER_TIMEOUT + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
        components.start("kafka")
    assert code == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1, err[-3000:]
    assert lines[0].startswith("lakehouse ingest: Kafka at ") and "has not answered" in lines[0], lines
    held = own_topics.bronze()
    assert [p for p, n in held.items() if n > 1] == [] and set(held) <= set(own_topics.produced.values())
    code, out, err = _finish(own_topics.ingest())
    assert code == 0, err[-2000:]
    own_topics.assert_every_offset_once()


def _wait_for_bronze(own_topics: OwnTopics, rows: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while sum(own_topics.bronze().values()) < rows:
        assert time.monotonic() < deadline, f"bronze has {sum(own_topics.bronze().values())} of {rows} rows"
        time.sleep(0.5)


def test_follow_rides_out_a_broker_crash_and_every_offset_lands_once(components, own_topics):
    follower = own_topics.ingest("--follow", "--max-latency", "0.5")
    try:
        own_topics.produce(2_000)
        _wait_for_bronze(own_topics, 2_000)
        components.stop("kafka", kill=True)
        time.sleep(2)
        assert follower.poll() is None, "the follower gave up while the broker was down"
        components.start("kafka")
        own_topics.produce(2_000, start=2_000)
        _wait_for_bronze(own_topics, 4_000)
        follower.send_signal(signal.SIGTERM)
        code, out, err = _finish(follower, timeout=60)
    finally:
        if follower.poll() is None:
            follower.kill()
    assert code == 0, err[-3000:]
    assert "Traceback" not in err
    own_topics.assert_every_offset_once()


# --- Kafka Connect and Postgres faults while the workload writes ----------------------------------------


def _materialize_and_check(settings) -> None:
    wait_until_captured(settings, timeout=180)
    result = materialize_all(log_level="WARNING")
    assert result.success
    assert [c.check_name for c in result.check_evaluations() if not c.passed] == []
    _assert_gold_equals_the_oracle(settings)


def _end_offsets(settings) -> dict[str, int]:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "fault-check"})
    try:
        ends = {}
        for stream in SOURCE_TABLES:
            topic = topic_for(settings, stream)
            ends[topic] = sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                              for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        return ends
    finally:
        consumer.close()


def _redelivered(settings) -> int:
    """Change events that bronze holds more than once (same table, key, LSN and op at other offsets)."""
    lake = open_lake(settings)
    total = 0
    for table in SOURCE_TABLES:
        try:
            total += lake.sql(f"select count(*) - count(distinct (record_key, lsn, op)) "
                              f"from bronze.{bronze_table_name(table)}").fetchone()[0]
        except duckdb.CatalogException:  # no bronze table yet (this file run alone)
            pass
    return total


def test_connect_sigkilled_while_the_workload_writes_redelivers_and_gold_equals_the_oracle(components, stack):
    before = _end_offsets(stack)
    redelivered_before = _redelivered(stack)
    worker = threading.Thread(target=run_workload, args=(stack,),
                              kwargs=dict(seed=151, customers=20, days=1, start=datetime(2026, 11, 10, tzinfo=UTC)))
    worker.start()
    # kill it the moment its first records of the workload reach Kafka: they are sent, but their source
    # offsets are not flushed yet (every 5 s), so Connect sends them again after the restart
    deadline = time.monotonic() + 60
    while _end_offsets(stack) == before:
        assert time.monotonic() < deadline, "Debezium sent nothing of the workload"
        time.sleep(0.05)
    components.stop("connect", kill=True)
    worker.join()
    # more changes while Connect is down: they wait in the replication slot
    run_workload(stack, seed=152, customers=10, days=1, start=datetime(2026, 11, 11, tzinfo=UTC))
    components.start("connect")
    _materialize_and_check(stack)
    assert _redelivered(stack) > redelivered_before, "nothing was redelivered: the fault did not bite"


def test_postgres_crashed_during_the_workload_debezium_resumes_and_gold_equals_the_oracle(components, stack):
    with psycopg.connect(stack.postgres_dsn) as conn:
        orders_before = conn.execute("select count(*) from orders").fetchone()[0]
    failure: list[BaseException] = []

    def workload() -> None:
        try:
            run_workload(stack, seed=153, customers=40, days=2, start=datetime(2026, 11, 13, tzinfo=UTC))
        except BaseException as exc:  # noqa: BLE001 - the crash is expected to break the workload
            failure.append(exc)

    worker = threading.Thread(target=workload)
    worker.start()
    deadline = time.monotonic() + 30
    while True:
        with psycopg.connect(stack.postgres_dsn) as conn:
            if conn.execute("select count(*) from orders").fetchone()[0] > orders_before + 5:
                break
        assert time.monotonic() < deadline and worker.is_alive(), "the workload wrote no orders"
        time.sleep(0.02)
    components.restart("postgres", kill=True)  # pg_ctl -m immediate: a crash, recovery at start
    worker.join()
    assert failure, "the workload ended before the crash: it proves nothing"
    # the source after the crash is the truth: more changes on top, then gold must equal the oracle
    run_workload(stack, seed=154, customers=10, days=1, start=datetime(2026, 11, 16, tzinfo=UTC))
    _materialize_and_check(stack)


# --- S3 gone during a bronze/events run --------------------------------------------------------------------

EVENT_DAYS = [date(2026, 5, 1), date(2026, 5, 2), date(2026, 5, 3)]
INGEST_EVENTS = """
import sys
from datetime import date
from pipelines.events.ingest import ingest_day
from pipelines.settings import load_settings
settings = load_settings()
for day in sys.argv[1:]:
    ingest_day(settings, date.fromisoformat(day), batch_lines=500)
"""


class KeptBucket(Bucket):
    """A Bucket that keeps the bytes it uploaded, to upload them again to a moto that lost them."""

    def __init__(self, settings):
        super().__init__(settings)
        self.bodies: dict[str, tuple[date, str, bytes, list[str], list[int]]] = {}

    def put(self, day, name, body, valid, invalid=()):
        key = super().put(day, name, body, valid, invalid)
        self.bodies[key] = (day, name, body, list(valid), list(invalid))
        return key

    def put_again(self) -> None:
        for day, name, body, valid, invalid in list(self.bodies.values()):
            self.put(day, name, body, valid, invalid)


@pytest.fixture
def private_s3(tmp_path):
    """A moto of this test's own (S3 only, no Java): stopping it loses only this test's objects."""
    data_dir = tmp_path / "data"
    own = Stack(load_settings({"LAKEHOUSE_DATA_DIR": str(data_dir)}))
    own.up(only=["s3"])
    try:
        yield own, load_settings({"LAKEHOUSE_DATA_DIR": str(data_dir), "LAKEHOUSE_LAKE_ROOT": str(tmp_path / "lake")})
    finally:
        own.down(purge=True)


def _ingest_events(settings, lake_root: str | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
    env.update(LAKEHOUSE_DATA_DIR=str(settings.data_dir), LAKEHOUSE_LAKE_ROOT=lake_root or settings.lake_root)
    return subprocess.Popen([sys.executable, "-c", INGEST_EVENTS, *(d.isoformat() for d in EVENT_DAYS)],
                            cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_s3_gone_during_an_events_run_fails_clearly_and_the_next_run_ingests_every_object_once(
    private_s3, tmp_path
):
    own, settings = private_s3
    bucket = KeptBucket(settings)
    n = 0
    for day in EVENT_DAYS:
        for o in range(15):
            events = [event(n + i) for i in range(400)]
            n += 400
            bucket.put(day, f"part-{o:03d}.jsonl", jsonl(events[:3]) + b"not json\n" + jsonl(events[3:]),
                       [e["eventId"] for e in events], [4])
    started = time.monotonic()
    code, _, err = _finish(_ingest_events(settings, lake_root=str(tmp_path / "scratch")))
    assert code == 0, err[-2000:]
    full_run = time.monotonic() - started

    proc = _ingest_events(settings)
    time.sleep(full_run * 0.6)
    assert proc.poll() is None, "the run ended before S3 went away: upload more"
    own.stop("s3", kill=True)
    gone = time.monotonic()
    code, _, err = _finish(proc, timeout=120)
    assert code == 1
    assert time.monotonic() - gone < 60, "bounded retries, then the error"
    assert err.strip().splitlines()[-1].startswith("pipelines.events.objects.EventSourceError: s3://"), err[-2000:]
    # no partial state: every object bronze holds, it holds whole
    if Path(settings.bronze_path("events")).exists():
        rows = pl.read_delta(settings.bronze_path("events")).filter(pl.col("row_kind") == "event")
        per_object = rows.group_by("object_key").agg(pl.col("event_id").sort_by("line_number")).to_dicts()
        assert all(r["event_id"] == bucket.valid[r["object_key"]] for r in per_object)

    # moto comes back empty (it keeps objects in memory): the producers deliver the same objects again
    own.start("s3")
    bucket.put_again()
    code, _, err = _finish(_ingest_events(settings))
    assert code == 0, err[-2000:]
    assert_exactly_once(settings, bucket)


# --- the lake's storage full in the middle of a commit ------------------------------------------------


class SmallDisk:
    """A real filesystem of its own for a lake: a tmpfs mounted at `path` (root only). `leave_free(n)`
    fills it with a ballast file until about n bytes are left, so the next write hits a real ENOSPC
    wherever it happens to be (a data file, the commit's log entry); `give_space_back()` deletes it."""

    def __init__(self, path: Path, size: str = "256m"):
        self.path = path
        self.ballast = path / "ballast"
        path.mkdir(parents=True)
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                 capture_output=True, text=True) if os.geteuid() == 0 else None
        if mounted is None or mounted.returncode != 0:
            pytest.skip("mounting a tmpfs for a real full disk needs root and CAP_SYS_ADMIN: "
                        f"{mounted.stderr.strip() if mounted else 'not root'}")

    def free(self) -> int:
        stat = os.statvfs(self.path)
        return stat.f_bavail * stat.f_frsize

    def used(self) -> int:
        stat = os.statvfs(self.path)
        return (stat.f_blocks - stat.f_bfree) * stat.f_frsize

    def leave_free(self, n: int) -> None:
        with open(self.ballast, "ab") as ballast:
            os.posix_fallocate(ballast.fileno(), 0, os.fstat(ballast.fileno()).st_size + self.free() - n)

    def give_space_back(self) -> None:
        self.ballast.unlink(missing_ok=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False)


@pytest.fixture
def small_disk(tmp_path):
    disk = SmallDisk(tmp_path / "lake")  # where OwnTopics puts its lake
    yield disk
    disk.unmount()


def _delta_versions(path: Path) -> dict[str, int]:
    """Every Delta table under `path` → its version; each must load, and each commit in its log parse."""
    versions = {}
    for log in path.rglob("_delta_log"):
        for entry in log.glob("*.json"):  # a commit cut short by the full disk would be a torn JSON here
            for line in entry.read_text().splitlines():
                json.loads(line)
        versions[log.parent.name] = DeltaTable(str(log.parent)).version()
    return versions


def test_cdc_ingest_on_a_full_disk_fails_clearly_leaves_no_partial_version_and_a_rerun_converges(
    own_topics, small_disk
):
    own_topics.produce(2_000)
    code, out, err = _finish(own_topics.ingest())
    assert code == 0, err[-2000:]
    first = own_topics.bronze()
    before = _delta_versions(small_disk.path)
    used_by_first = small_disk.used()

    # a batch ten times the first needs about ten times its space: leave a third of that, so the disk
    # fills while the batch's data files are written
    own_topics.produce(20_000, start=2_000)
    small_disk.leave_free(int(0.3 * 10 * used_by_first))
    code, out, err = _finish(own_topics.ingest())
    assert code == 1, (code, out[-1000:], err[-2000:])
    # the last line says what failed and that nothing is lost (above it, delta-rs's runtime may print a
    # panic of its own buffered writer, "Already shut down", which Python cannot silence)
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err, err[-3000:]
    assert last.startswith("lakehouse ingest: ") and "No space left on device" in last, err[-3000:]
    assert "nothing of the batch is committed" in last
    # no partial version: every table loads at the version it had, with the rows it had
    assert _delta_versions(small_disk.path) == before
    assert own_topics.bronze() == first

    small_disk.give_space_back()
    code, out, err = _finish(own_topics.ingest())
    assert code == 0, err[-2000:]
    own_topics.assert_every_offset_once()
