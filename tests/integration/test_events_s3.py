"""S3 raw events → bronze/events against the local stack's moto S3: layout, validation, exactly-once
under SIGKILL, rewritten objects, the sensor.

Isolation: every test writes under its own `test-<uuid>/raw/events` prefix of the shared bucket and
ingests into its own lake under tmp_path. Truth: the lines each test uploads itself.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from pipelines.events.ingest import ingest_day
from pipelines.events.objects import ObjectInfo, S3EventStore, day_prefix, event_store_for

pytestmark = pytest.mark.stack

PROJECT = Path(__file__).resolve().parents[2]
DAYS = [date(2026, 4, 1), date(2026, 4, 2), date(2026, 4, 3)]


def event(i: int) -> dict:
    return {
        "eventId": str(uuid.UUID(int=(7 << 120) + i)),
        "eventType": ("order.created", "product.viewed", "payment.processed")[i % 3],
        "eventSource": "svc",
        "timestamp": f"2026-04-01T12:{i // 60 % 60:02d}:{i % 60:02d}.000Z",
        "version": "1.0",
        "data": {"payload": {"n": i, "padding": "x" * (i % 50)}, "metadata": {"step": "t"}},
        "correlationId": str(uuid.UUID(int=(9 << 120) + i)),
        "userId": None,
        "sessionId": None,
        "environment": "test",
        "region": "us-east-1",
    }


def jsonl(events) -> bytes:
    return "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events).encode()


class Bucket:
    """The test's own prefix in the stack's bucket, and the lines it knows are valid / invalid."""

    def __init__(self, settings):
        self.settings = settings
        self.store: S3EventStore = event_store_for(settings)
        self.valid: dict[str, list[str]] = {}
        self.invalid: dict[str, list[int]] = {}

    def put(self, day: date, name: str, body: bytes, valid: list[str], invalid=()) -> str:
        key = f"{self.store.prefix}/{day_prefix(day)}{name}"
        self.store.client.put_object(Bucket=self.store.bucket, Key=key, Body=body)
        self.valid[key] = list(valid)
        self.invalid[key] = list(invalid)
        return key


@pytest.fixture
def settings(stack, tmp_path):
    return replace(stack, events_prefix=f"test-{uuid.uuid4().hex[:12]}/raw/events", lake_root=str(tmp_path / "lake"))


@pytest.fixture
def bucket(settings) -> Bucket:
    return Bucket(settings)


def current_events(settings) -> pl.DataFrame:
    rows = pl.read_delta(settings.bronze_path("events"))
    return rows.filter((pl.col("row_kind") == "event") & pl.col("superseded_at").is_null())


def quarantine(settings) -> pl.DataFrame:
    if not Path(settings.bronze_path("quarantine")).exists():
        return pl.DataFrame(schema={"object_key": pl.String, "line_number": pl.Int64, "error": pl.String})
    return pl.read_delta(settings.bronze_path("quarantine"))


def assert_exactly_once(settings, bucket: Bucket) -> None:
    rows = current_events(settings)
    got = rows.group_by("object_key").agg(pl.col("event_id").sort_by("line_number")).to_dicts()
    assert {r["object_key"]: r["event_id"] for r in got} == {k: v for k, v in bucket.valid.items() if v}
    assert rows["bronze_id"].n_unique() == rows.height
    q = quarantine(settings)
    assert sorted(zip(q["object_key"], q["line_number"], strict=True)) == sorted(
        (k, n) for k, lines in bucket.invalid.items() for n in lines
    )


def test_mixed_objects_over_several_days_reconcile(settings, bucket):
    e = [event(i) for i in range(60)]
    ids = [x["eventId"] for x in e]
    bucket.put(DAYS[0], "plain.jsonl", jsonl(e[0:20]), ids[0:20])
    bucket.put(DAYS[0], "zipped.jsonl.gz", gzip.compress(jsonl(e[20:30])), ids[20:30])
    bucket.put(DAYS[1], "empty.jsonl", b"", [])
    bucket.put(DAYS[1], "truncated.jsonl", jsonl(e[30:35]) + json.dumps(e[35]).encode()[:40], ids[30:35], [6])
    no_id = {k: v for k, v in e[37].items() if k != "eventId"}
    cloud = {"specversion": "1.0", "type": "com.shop.order.created", "source": "/orders", "id": ids[38],
             "time": "2026-04-03T09:00:00+01:00",
             "data": {"entityId": "o-1", "entityType": "order", "action": "created", "payload": {"n": 38},
                      "metadata": {"correlationId": ids[39], "causationId": "c", "userId": None}}}
    body = b"\n".join([json.dumps(e[36]).encode(), b"{not json", json.dumps(no_id).encode(),
                       json.dumps(cloud).encode()]) + b"\n"
    bucket.put(DAYS[2], "mixed.jsonl", body, [ids[36], ids[38]], [2, 3])

    results = [ingest_day(settings, day) for day in DAYS]

    lines_uploaded = 20 + 10 + 0 + 6 + 4
    assert sum(r.lines_read for r in results) == lines_uploaded
    assert current_events(settings).height + quarantine(settings).height == lines_uploaded
    assert sum(r.objects_ingested for r in results) == 5
    assert_exactly_once(settings, bucket)
    q = quarantine(settings)
    assert set(q["source"]) == {"s3"}
    reasons = {(k.rsplit("/", 1)[-1], n): err for k, n, err in zip(q["object_key"], q["line_number"], q["error"], strict=True)}
    assert reasons[("truncated.jsonl", 6)].startswith("truncated last line")
    assert reasons[("mixed.jsonl", 2)].startswith("not valid JSON")
    assert reasons[("mixed.jsonl", 3)] == "missing required field eventId"
    ce = current_events(settings).filter(pl.col("envelope") == "cloudevents")
    assert ce["event_type"].to_list() == ["order.created"] and ce["correlation_id"].to_list() == [ids[39]]
    # the ETags recorded are S3's
    heads = {k: bucket.store.client.head_object(Bucket=bucket.store.bucket, Key=k)["ETag"].strip('"') for k in bucket.valid}
    objects = pl.read_delta(settings.bronze_path("events")).filter(pl.col("row_kind") == "object")
    assert dict(zip(objects["object_key"], objects["etag"], strict=True)) == heads

    again = [ingest_day(settings, day) for day in DAYS]
    assert sum(r.objects_ingested for r in again) == 0
    assert_exactly_once(settings, bucket)


def test_s3_listing_names_what_is_outside_the_day_layout(settings, bucket):
    from tests.unit.test_events_ingest import OUTSIDE_LAYOUT, put_outside_layout

    bucket.put(date(2026, 3, 1), "a.jsonl", jsonl([event(1)]), [])
    put_outside_layout(lambda key, body: bucket.store.client.put_object(
        Bucket=bucket.store.bucket, Key=f"{bucket.store.prefix}/{key}", Body=body))
    listing = bucket.store.list_days(date(2026, 1, 1))
    assert listing.days == [date(2026, 3, 1)]
    assert len(listing.outside_layout) == len(OUTSIDE_LAYOUT)
    assert "year=2026/month=04/loose.jsonl" in listing.outside_layout and "loose.jsonl" in listing.outside_layout


def test_rewritten_object_is_ingested_again_and_supersedes(settings, bucket):
    key = bucket.put(DAYS[0], "a.jsonl", jsonl(map(event, range(3))), [event(i)["eventId"] for i in range(3)])
    ingest_day(settings, DAYS[0])
    bucket.put(DAYS[0], "a.jsonl", jsonl(map(event, range(10, 12))), [event(i)["eventId"] for i in range(10, 12)])
    result = ingest_day(settings, DAYS[0])
    assert (result.objects_ingested, result.objects_rewritten) == (1, 1)
    assert_exactly_once(settings, bucket)
    everything = pl.read_delta(settings.bronze_path("events")).filter(pl.col("object_key") == key)
    assert everything.filter(pl.col("superseded_at").is_not_null()).height == 3 + 1


def test_object_rewritten_between_listing_and_reading_is_left_for_the_next_run(settings, bucket):
    key = bucket.put(DAYS[0], "a.jsonl", jsonl([event(1)]), [event(1)["eventId"]])
    listed = bucket.store.list_day(DAYS[0])
    bucket.put(DAYS[0], "a.jsonl", jsonl([event(2)]), [event(2)["eventId"]])
    from pipelines.events.objects import ObjectChanged

    with pytest.raises(ObjectChanged):
        bucket.store.read(listed[0])
    assert listed[0] == ObjectInfo(key, listed[0].etag, listed[0].size, listed[0].last_modified)
    ingest_day(settings, DAYS[0])
    assert_exactly_once(settings, bucket)


# -- SIGKILL ------------------------------------------------------------------------------------------

INGEST_SCRIPT = """
import sys
from datetime import date
from pipelines.events.ingest import ingest_day
from pipelines.settings import load_settings
settings = load_settings()
for day in sys.argv[2:]:
    ingest_day(settings, date.fromisoformat(day), batch_lines=int(sys.argv[1]))
"""


def ingest_process(settings, failpoints: str = "", batch_lines: int = 500) -> subprocess.Popen:
    env = dict(
        os.environ,
        LAKEHOUSE_DATA_DIR=str(settings.data_dir),
        LAKEHOUSE_EVENTS_PREFIX=settings.events_prefix,
        LAKEHOUSE_LAKE_ROOT=settings.lake_root,
        LAKEHOUSE_FAILPOINTS=failpoints,
    )
    return subprocess.Popen(
        [sys.executable, "-c", INGEST_SCRIPT, str(batch_lines), *(d.isoformat() for d in DAYS)],
        cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finish(proc: subprocess.Popen) -> int:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode in (0, -signal.SIGKILL), err[-3000:]
    return proc.returncode


def upload_many(bucket: Bucket, objects_per_day: int = 8, lines: int = 120) -> None:
    n = 0
    for day in DAYS:
        for o in range(objects_per_day):
            events = [event(n + i) for i in range(lines)]
            n += lines
            body = jsonl(events[:5]) + b"garbage line\n" + jsonl(events[5:])
            if o % 3 == 0:
                body = gzip.compress(body)
            bucket.put(day, f"part-{o:03d}.jsonl" + (".gz" if o % 3 == 0 else ""), body,
                       [e["eventId"] for e in events], [6])


@pytest.mark.parametrize(
    "failpoints",
    ["events.before_write:3", "events.after_quarantine_commit:2", "events.after_commit:1", "events.after_commit:4"],
)
def test_sigkill_at_failpoint_then_rerun_every_object_exactly_once(settings, bucket, failpoints):
    upload_many(bucket)
    assert finish(ingest_process(settings, failpoints)) == -signal.SIGKILL
    assert finish(ingest_process(settings)) == 0
    assert_exactly_once(settings, bucket)


def test_sigkill_at_random_moments_then_rerun_every_object_exactly_once(settings, bucket, tmp_path):
    upload_many(bucket, objects_per_day=12, lines=600)
    started = time.monotonic()
    assert finish(ingest_process(replace(settings, lake_root=str(tmp_path / "scratch")), batch_lines=700)) == 0
    full_run = time.monotonic() - started  # interpreter start included: kills land in imports too
    rng = random.Random(5)
    kills = 0
    for _ in range(5):
        proc = ingest_process(settings, batch_lines=700)
        time.sleep(rng.uniform(0.3, 0.9) * full_run)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        finish(proc)
    assert finish(ingest_process(settings)) == 0
    assert kills > 0
    assert_exactly_once(settings, bucket)


# -- the sensor ---------------------------------------------------------------------------------------


def test_sensor_requests_runs_only_for_partitions_with_new_objects(settings, bucket, monkeypatch):
    from pipelines.events.assets import bronze_events_sensor
    from pipelines.resources import LakehouseSettings

    monkeypatch.setenv("LAKEHOUSE_EVENTS_PREFIX", settings.events_prefix)
    resources = {"lakehouse": LakehouseSettings(data_dir=str(settings.data_dir))}

    def tick(cursor):
        with dg.build_sensor_context(cursor=cursor, resources=resources) as context:
            result = bronze_events_sensor(context)
        return sorted(r.partition_key for r in result.run_requests), result.cursor

    bucket.put(DAYS[0], "a.jsonl", jsonl([event(1)]), [])
    bucket.put(DAYS[2], "b.jsonl", jsonl([event(2)]), [])
    keys, cursor = tick(None)
    assert keys == ["2026-04-01", "2026-04-03"]
    assert tick(cursor)[0] == []
    bucket.put(DAYS[1], "c.jsonl", jsonl([event(3)]), [])
    keys, cursor = tick(cursor)
    assert keys == ["2026-04-02"]
    bucket.put(DAYS[2], "b.jsonl", jsonl([event(4)]), [])  # rewritten
    assert tick(cursor)[0] == ["2026-04-03"]
