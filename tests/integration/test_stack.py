"""The local stack runs real Postgres, Kafka, Kafka Connect + Debezium and moto S3 processes."""

from __future__ import annotations

import json
import time
import uuid

import psycopg
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from pipelines.settings import load_settings
from pipelines.stack import Stack
from pipelines.stack.connect import cdc_topics
from pipelines.stack.processes import StackError, pid_alive
from tests.conftest import stack_schema_file

pytestmark = pytest.mark.stack


def test_state_file_has_the_shape_settings_reads(stack):
    state = json.loads(stack.stack_state_file.read_text())
    assert set(state) == {"postgres", "kafka", "connect", "s3"}
    assert state["postgres"]["database"] == "shop"
    assert state["connect"]["connector"] == "shop-postgres"
    assert state["s3"]["bucket"] == "lakehouse-raw"
    assert stack.kafka_bootstrap == f"127.0.0.1:{state['kafka']['port']}"
    assert stack.postgres_dsn.endswith(f":{state['postgres']['port']}/shop")
    assert stack.s3_endpoint_url == f"http://127.0.0.1:{state['s3']['port']}"
    assert all(isinstance(entry["pid"], int) for entry in state.values())


def test_up_twice_is_idempotent(stack):
    again = Stack(stack, schema_file=stack_schema_file())
    before = again.state.read()
    started = time.monotonic()
    after = again.up()
    assert after == before  # same pids and ports: nothing restarted
    assert time.monotonic() - started < 10
    status = again.status()
    assert {name: info["healthy"] for name, info in status.items()} == {
        "postgres": True, "kafka": True, "s3": True, "connect": True,
    }


def test_all_cdc_topics_exist(stack):
    from confluent_kafka.admin import AdminClient

    topics = AdminClient({"bootstrap.servers": stack.kafka_bootstrap}).list_topics(timeout=10).topics
    assert set(cdc_topics()) <= set(topics)


def _insert_row(conn: psycopg.Connection, table: str) -> dict:
    """Insert a row giving a value to every NOT NULL column without default; return the row as inserted."""
    columns = conn.execute(
        "select column_name, data_type from information_schema.columns where table_schema = 'public' "
        "and table_name = %s and is_nullable = 'NO' and column_default is null and is_identity = 'NO'",
        (table,),
    ).fetchall()
    tag = uuid.uuid4().hex[:12]
    literals = {
        "text": f"'stack-test-{tag}@example.com'", "character varying": f"'st-{tag}@example.com'", "character": "'Z'",
        "integer": "1", "bigint": str(int(tag, 16) % 2**40), "smallint": "1", "numeric": "1.00",
        "boolean": "true", "date": "current_date", "uuid": "gen_random_uuid()",
        "timestamp with time zone": "now()", "timestamp without time zone": "now()",
    }
    names = [name for name, _ in columns]
    values = [literals.get(data_type, "default") for _, data_type in columns]
    sql = (f"insert into public.{table} ({', '.join(names)}) values ({', '.join(values)}) returning *"
           if names else f"insert into public.{table} default values returning *")
    cur = conn.execute(sql)
    return dict(zip([d.name for d in cur.description], cur.fetchone()))


def test_inserted_row_arrives_as_debezium_change_event(stack):
    with psycopg.connect(stack.postgres_dsn, autocommit=True) as conn:
        row = _insert_row(conn, "customers")
    expected = {k: v for k, v in row.items() if isinstance(v, str)}
    assert expected, "customers needs at least one text column to recognise the row"

    consumer = Consumer({"bootstrap.servers": stack.kafka_bootstrap, "group.id": "stack-test",
                         "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(f"{stack.topic_prefix}.public.customers", 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + 90
        event = None
        while event is None and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error() or msg.value() is None:
                continue
            value = json.loads(msg.value())
            after = value["payload"].get("after") or {}
            if all(after.get(k) == v for k, v in expected.items()):
                event = (json.loads(msg.key()), value)
    finally:
        consumer.close()
    assert event is not None, f"no change event for {expected} within 90 s"
    key, value = event
    assert set(value) == {"schema", "payload"} and set(key) == {"schema", "payload"}  # schemas enabled
    assert value["payload"]["op"] == "c"
    assert value["payload"]["source"]["table"] == "customers"
    assert value["payload"]["source"]["connector"] == "postgresql"


def test_s3_bucket_exists(stack):
    import boto3

    s3 = boto3.client("s3", endpoint_url=stack.s3_endpoint_url, aws_access_key_id=stack.s3_access_key_id,
                      aws_secret_access_key=stack.s3_secret_access_key, region_name=stack.s3_region)
    assert stack.s3_bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    s3.put_object(Bucket=stack.s3_bucket, Key="probe.txt", Body=b"ok")
    assert s3.get_object(Bucket=stack.s3_bucket, Key="probe.txt")["Body"].read() == b"ok"


def test_down_leaves_no_process_behind(stack, tmp_path):
    """A second, private stack (own data dir and ports) so that the session stack keeps running."""
    settings = load_settings({"LAKEHOUSE_DATA_DIR": str(tmp_path)})
    own = Stack(settings, schema_file=stack_schema_file())
    try:
        state = own.up()
        pids = {name: entry["pid"] for name, entry in state.items()}
        postgres_children = _children(pids["postgres"])
        assert all(pid_alive(pid) for pid in pids.values())
        session_pids = {entry["pid"] for entry in json.loads(stack.stack_state_file.read_text()).values()}
        assert set(pids.values()).isdisjoint(session_pids)
    finally:
        own.down()
    assert not settings.stack_state_file.exists()
    assert [pid for pid in [*pids.values(), *postgres_children] if pid_alive(pid)] == []
    assert (settings.stack_dir / "postgres" / "data" / "PG_VERSION").exists()  # data stays without purge
    own.down(purge=True)
    assert not settings.stack_dir.exists()
    # the session stack is untouched
    assert all(info["healthy"] for info in Stack(stack).status().values())


def test_up_can_start_one_component_alone(tmp_path):
    own = Stack(load_settings({"LAKEHOUSE_DATA_DIR": str(tmp_path)}))
    with pytest.raises(StackError, match="unknown stack component"):
        own.up(only=["zookeeper"])
    try:
        state = own.up(only=["kafka"])
        assert set(state) == {"kafka"} and pid_alive(state["kafka"]["pid"])
        assert {name for name, info in own.status().items() if info["healthy"]} == {"kafka"}
    finally:
        own.down(purge=True)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(p) for p in handle.read().split()]
    except FileNotFoundError:
        return []


def test_a_5_mb_row_reaches_kafka_and_cdc_keeps_flowing(stack):
    """Kafka's 1 MB defaults would fail Connect's task on a wide row and stop all CDC."""
    big = "x" * (5 * 1024 * 1024)
    with psycopg.connect(stack.postgres_dsn, autocommit=True) as conn:
        row = _insert_row(conn, "customers")
        conn.execute("update customers set city = %s where customer_id = %s", (big, row["customer_id"]))
        after_big = _insert_row(conn, "customers")
    consumer = Consumer({"bootstrap.servers": stack.kafka_bootstrap, "group.id": "stack-test-big",
                         "enable.auto.commit": False})
    seen_big = seen_after = False
    try:
        consumer.assign([TopicPartition(f"{stack.topic_prefix}.public.customers", 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + 90
        while not (seen_big and seen_after) and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error() or msg.value() is None:
                continue
            after = json.loads(msg.value())["payload"].get("after") or {}
            seen_big |= after.get("customer_id") == str(row["customer_id"]) and after.get("city") == big
            seen_after |= after.get("customer_id") == str(after_big["customer_id"])
    finally:
        consumer.close()
    assert seen_big and seen_after
