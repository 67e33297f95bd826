"""Raw event objects in a local folder (the S3 layout) → bronze/events, exactly once; no services.

Truth: the lines each test writes itself (which ones are valid, their eventIds), never the ingest's
own counters.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from pipelines.events.ingest import ConcurrentIngestError, ingest_day
from pipelines.events.objects import DirectoryEventStore, day_of_key, day_prefix, event_store_for
from pipelines.settings import load_settings

PROJECT = Path(__file__).resolve().parents[2]
DAY1, DAY2, DAY3 = date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)


def event(i: int, event_type: str = "order.created") -> dict:
    return {
        "eventId": str(uuid.UUID(int=i + 1)),
        "eventType": event_type,
        "eventSource": "order-service",
        "timestamp": f"2026-03-01T00:00:{i % 60:02d}.000Z",
        "version": "1.0",
        "data": {"payload": {"n": i}, "metadata": {"step": "t"}},
        "correlationId": str(uuid.UUID(int=10**6 + i)),
        "userId": None,
        "sessionId": None,
    }


def jsonl(events: list[dict]) -> bytes:
    return "".join(json.dumps(e) + "\n" for e in events).encode()


class Folder:
    """The events folder a test writes objects into, and the lines it knows are valid."""

    def __init__(self, root: Path):
        self.root = root
        self.valid: dict[str, list[str]] = {}  # key → eventIds of its valid lines, in order
        self.invalid: dict[str, list[int]] = {}  # key → line numbers expected in quarantine

    def put(self, day: date, name: str, body: bytes, valid: list[str], invalid: list[int] = ()) -> str:
        key = f"{day_prefix(day)}{name}"
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{name}.partial")
        partial.write_bytes(body)
        os.replace(partial, path)
        self.valid[key] = list(valid)
        self.invalid[key] = list(invalid)
        return key


@pytest.fixture
def folder(tmp_path) -> Folder:
    return Folder(tmp_path / "events")


@pytest.fixture
def settings(tmp_path, folder):
    return replace(load_settings({"LAKEHOUSE_DATA_DIR": str(tmp_path / "data")}),
                   events_prefix=str(folder.root), lake_root=str(tmp_path / "lake"))


def bronze(settings) -> pl.DataFrame:
    return pl.read_delta(settings.bronze_path("events"))


def quarantine(settings) -> pl.DataFrame:
    path = settings.bronze_path("quarantine")
    if not Path(path).exists():
        return pl.DataFrame(schema={"object_key": pl.String, "line_number": pl.Int64, "error": pl.String,
                                    "location": pl.String, "raw_value": pl.Binary, "etag": pl.String})
    return pl.read_delta(path)


def current_events(settings) -> pl.DataFrame:
    return bronze(settings).filter((pl.col("row_kind") == "event") & pl.col("superseded_at").is_null())


def assert_exactly_once(settings, folder: Folder) -> None:
    """Every valid line of every object once in bronze (current), every invalid line once in quarantine."""
    rows = current_events(settings)
    got = rows.group_by("object_key").agg(pl.col("event_id").sort_by("line_number")).to_dicts()
    assert {r["object_key"]: r["event_id"] for r in got} == {k: v for k, v in folder.valid.items() if v}
    assert rows["bronze_id"].n_unique() == rows.height
    q = quarantine(settings)
    seen = sorted(zip(q["object_key"].to_list(), q["line_number"].to_list(), strict=True))
    assert seen == sorted((k, n) for k, lines in folder.invalid.items() for n in lines)
    objects = bronze(settings).filter((pl.col("row_kind") == "object") & pl.col("superseded_at").is_null())
    assert sorted(objects["object_key"].to_list()) == sorted(folder.valid)


def mixed_objects(folder: Folder) -> None:
    """Several days; a gzip object, an empty one, a truncated last line, a non-JSON line, a line
    without eventId, a CloudEvents line."""
    e = [event(i) for i in range(40)]
    folder.put(DAY1, "a.jsonl", jsonl(e[0:10]), [x["eventId"] for x in e[0:10]])
    folder.put(DAY1, "b.jsonl.gz", gzip.compress(jsonl(e[10:20])), [x["eventId"] for x in e[10:20]])
    folder.put(DAY1, "empty.jsonl", b"", [])
    truncated = jsonl(e[20:25]) + json.dumps(e[25]).encode()[:-15]
    folder.put(DAY2, "truncated.jsonl", truncated, [x["eventId"] for x in e[20:25]], [6])
    no_id = dict(e[27])
    del no_id["eventId"]
    cloud = {"specversion": "1.0", "type": "com.shop.order.created", "source": "/orders", "id": e[28]["eventId"],
             "time": "2026-03-02T10:00:00Z", "data": {"payload": {"n": 28}, "metadata": {"userId": None}}}
    body = (json.dumps(e[26]) + "\nthis is not json\n\n" + json.dumps(no_id) + "\n" + json.dumps(cloud) + "\n").encode()
    folder.put(DAY2, "mixed.jsonl", body, [e[26]["eventId"], e[28]["eventId"]], [2, 4])
    folder.put(DAY3, "c.jsonl", jsonl(e[30:40]), [x["eventId"] for x in e[30:40]])


def test_objects_across_days_are_ingested_once_and_reconcile(settings, folder):
    mixed_objects(folder)
    results = [ingest_day(settings, day) for day in (DAY1, DAY2, DAY3)]
    assert_exactly_once(settings, folder)
    lines_written = sum(len(v) for v in folder.valid.values()) + sum(len(v) for v in folder.invalid.values())
    assert sum(r.lines_read for r in results) == lines_written
    assert sum(r.bronze_rows + r.quarantined for r in results) == lines_written
    assert current_events(settings).height + quarantine(settings).height == lines_written

    q = quarantine(settings).sort("object_key", "line_number")
    reasons = dict(zip(zip(q["object_key"], q["line_number"], strict=True), q["error"], strict=True))
    assert reasons[(f"{day_prefix(DAY2)}truncated.jsonl", 6)].startswith("truncated last line")
    assert reasons[(f"{day_prefix(DAY2)}mixed.jsonl", 2)].startswith("not valid JSON")
    assert reasons[(f"{day_prefix(DAY2)}mixed.jsonl", 4)] == "missing required field eventId"
    assert set(q["source"]) == {"file"}
    assert q.filter(pl.col("line_number") == 2)["raw_value"].to_list() == [b"this is not json"]
    assert q.filter(pl.col("line_number") == 2)["location"].to_list() == [f"{day_prefix(DAY2)}mixed.jsonl:2"]

    rows = current_events(settings)
    cloud = rows.filter(pl.col("envelope") == "cloudevents")
    assert cloud["event_type"].to_list() == ["order.created"] and cloud["event_source"].to_list() == ["/orders"]
    assert set(rows["object_day"].to_list()) == {DAY1, DAY2, DAY3}
    for key, day in [(k, day_of_key(k)) for k in folder.valid]:
        assert set(bronze(settings).filter(pl.col("object_key") == key)["object_day"]) == {day}
    # raw lines are kept byte for byte
    first = rows.filter(pl.col("object_key") == f"{day_prefix(DAY1)}a.jsonl").sort("line_number")
    assert first["raw_line"][0] == json.dumps(event(0))


def test_rerun_ingests_nothing_again(settings, folder):
    mixed_objects(folder)
    for day in (DAY1, DAY2, DAY3):
        ingest_day(settings, day)
    again = [ingest_day(settings, day) for day in (DAY1, DAY2, DAY3)]
    assert [r.objects_ingested for r in again] == [0, 0, 0]
    assert sum(r.objects_skipped for r in again) == len(folder.valid)
    assert_exactly_once(settings, folder)


def test_new_objects_of_a_day_are_added_later(settings, folder):
    folder.put(DAY1, "a.jsonl", jsonl([event(1)]), [event(1)["eventId"]])
    ingest_day(settings, DAY1)
    folder.put(DAY1, "b.jsonl", jsonl([event(2), event(3)]), [event(2)["eventId"], event(3)["eventId"]])
    result = ingest_day(settings, DAY1)
    assert (result.objects_ingested, result.objects_skipped) == (1, 1)
    assert_exactly_once(settings, folder)


def test_an_object_with_cr_only_line_breaks_is_quarantined_saying_so(settings, folder):
    folder.put(DAY1, "mac.jsonl", jsonl([event(1), event(2)]).replace(b"\n", b"\r"), [], [1])
    ingest_day(settings, DAY1)
    (reason,) = quarantine(settings)["error"].to_list()
    assert reason.startswith("line breaks are CR only (JSON Lines ends lines with LF or CRLF); ")
    assert_exactly_once(settings, folder)


def test_rewritten_object_supersedes_its_old_rows(settings, folder):
    key = folder.put(DAY1, "a.jsonl", jsonl([event(1), event(2)]) + b"bad\n", [event(1)["eventId"], event(2)["eventId"]], [3])
    folder.put(DAY1, "b.jsonl", jsonl([event(5)]), [event(5)["eventId"]])
    ingest_day(settings, DAY1)
    old_etag = bronze(settings).filter(pl.col("object_key") == key)["etag"][0]
    folder.put(DAY1, "a.jsonl", jsonl([event(7), event(8), event(9)]), [e["eventId"] for e in map(event, (7, 8, 9))])
    os.utime(folder.root / key, ns=(1, 1))  # a new modification time, whatever the clock's resolution
    result = ingest_day(settings, DAY1)
    assert (result.objects_ingested, result.objects_rewritten, result.objects_skipped) == (1, 1, 1)

    rows = bronze(settings).filter(pl.col("object_key") == key)
    old = rows.filter(pl.col("etag") == old_etag)
    new = rows.filter(pl.col("etag") != old_etag)
    assert old.height == 3 and old["superseded_at"].null_count() == 0  # 2 events + the object row
    assert set(old["superseded_by_etag"]) == set(new["etag"])
    assert new["superseded_at"].null_count() == new.height == 4
    # the old version's quarantined line stays in quarantine as seen; the current rows are the new ones
    folder.invalid[key] = [3]
    assert_exactly_once(settings, folder)


def test_an_object_rewritten_back_to_earlier_content_arrives_again_under_its_own_ids(settings, folder):
    first = jsonl([event(1), event(2)]) + b"bad\n"
    key = folder.put(DAY1, "a.jsonl", first, [event(1)["eventId"], event(2)["eventId"]], [3])
    os.utime(folder.root / key, ns=(1, 1))
    ingest_day(settings, DAY1)
    folder.put(DAY1, "a.jsonl", jsonl([event(7)]), [event(7)["eventId"]])
    ingest_day(settings, DAY1)
    # the first content again, with the first ETag (S3: the same bytes have the same MD5 ETag)
    folder.put(DAY1, "a.jsonl", first, [event(1)["eventId"], event(2)["eventId"]], [3])
    os.utime(folder.root / key, ns=(1, 1))
    result = ingest_day(settings, DAY1)
    assert (result.objects_ingested, result.objects_rewritten) == (1, 1)

    rows = bronze(settings).filter(pl.col("object_key") == key)
    assert rows["bronze_id"].is_unique().all()
    current = rows.filter(pl.col("superseded_at").is_null())
    etag = current["etag"][0]
    assert sorted(current["bronze_id"]) == [f"{key}@{etag}#2", f"{key}@{etag}#2:1", f"{key}@{etag}#2:2"]
    assert rows.filter(pl.col("superseded_at").is_not_null()).height == 3 + 2  # first arrival + the one-event version
    # each arrival's bad line is recorded, as its rows are
    q = quarantine(settings)
    assert sorted(zip(q["line_number"], q["ingest_batch_id"], strict=True)) == [(3, "events/2026-03-01#1"),
                                                                              (3, "events/2026-03-01#3")]


def _another_run_commits_first(monkeypatch, run) -> list:
    """Makes `run` (another ingest) run to its end when this run is about to write its first batch;
    its result is then the list's only item."""
    from pipelines.events import ingest as events_ingest

    real_failpoint = events_ingest.failpoint
    results = []
    started = []

    def hook(name):
        if name == "events.before_write" and not started:
            started.append(True)
            results.append(run())
        real_failpoint(name)

    monkeypatch.setattr(events_ingest, "failpoint", hook)
    return results


def test_a_rewrite_commits_while_another_day_is_ingested(settings, folder, monkeypatch):
    """A backfill ingests days in parallel. Another day's commit lands between this day's opening of
    bronze and its MERGE (which supersedes a rewritten object); delta-rs refuses a MERGE after any
    concurrent append, and the retry on the table as it is then must commit it, once."""
    key = folder.put(DAY1, "a.jsonl", jsonl([event(1)]), [event(1)["eventId"]])
    ingest_day(settings, DAY1)
    folder.put(DAY1, "a.jsonl", jsonl([event(7)]), [event(7)["eventId"]])
    os.utime(folder.root / key, ns=(1, 1))
    folder.put(DAY2, "b.jsonl", jsonl([event(20)]), [event(20)["eventId"]])

    other_day = _another_run_commits_first(monkeypatch, lambda: ingest_day(settings, DAY2))
    result = ingest_day(settings, DAY1)
    assert other_day[0].objects_ingested == 1
    assert (result.objects_ingested, result.objects_rewritten) == (1, 1)
    assert_exactly_once(settings, folder)


def test_a_run_of_the_same_day_committing_meanwhile_stops_this_one_and_nothing_is_written_twice(
    settings, folder, monkeypatch
):
    """Two runs of one day at once: the other commits first. Ours must stop, not retry on top of it."""
    from pipelines.events import ingest as events_ingest

    folder.put(DAY1, "a.jsonl", jsonl([event(1), event(2)]) + b"bad\n", [event(1)["eventId"], event(2)["eventId"]], [3])
    other_run = _another_run_commits_first(monkeypatch, lambda: ingest_day(settings, DAY1))
    with pytest.raises(events_ingest.ConcurrentIngestError, match="another run is ingesting this day"):
        ingest_day(settings, DAY1)
    assert other_run[0].objects_ingested == 1
    assert_exactly_once(settings, folder)


def test_small_batches_commit_whole_objects(settings, folder):
    for n in range(6):
        folder.put(DAY1, f"o{n}.jsonl", jsonl([event(10 * n + i) for i in range(5)]),
                   [event(10 * n + i)["eventId"] for i in range(5)])
    result = ingest_day(settings, DAY1, batch_lines=7)
    assert result.commits == 3  # objects are never split: 2 objects (10 lines) per commit
    batches = bronze(settings).group_by("object_key").agg(pl.col("ingest_batch_id").n_unique())
    assert batches["ingest_batch_id"].to_list() == [1] * 6
    assert_exactly_once(settings, folder)


def test_duplicate_event_ids_across_objects_are_kept(settings, folder):
    folder.put(DAY1, "a.jsonl", jsonl([event(1)]), [event(1)["eventId"]])
    folder.put(DAY1, "b.jsonl", jsonl([event(1)]), [event(1)["eventId"]])
    ingest_day(settings, DAY1)
    assert current_events(settings)["event_id"].to_list() == [event(1)["eventId"]] * 2


def test_unreadable_gzip_is_quarantined_as_one_entry(settings, folder):
    key = folder.put(DAY1, "broken.jsonl.gz", gzip.compress(jsonl([event(1)]))[:-12], [], [0])
    result = ingest_day(settings, DAY1)
    assert (result.lines_read, result.quarantined) == (1, 1)
    assert quarantine(settings)["error"][0].startswith("object is not readable gzip")
    assert_exactly_once(settings, folder)
    assert key in folder.valid


def test_folder_store_lists_only_the_days_asked_for(folder):
    folder.put(DAY1, "a.jsonl", b"", [])
    folder.put(date(2025, 12, 31), "z.jsonl", b"", [])
    folder.put(DAY3, ".hidden.partial", b"", [])
    store = DirectoryEventStore(folder.root)
    assert store.list_days(date(2026, 1, 1)).days == [DAY1, DAY3]
    assert store.list_days(date(2026, 1, 1)).before_start == []
    assert [o.key for o in store.list_day(DAY1)] == [f"{day_prefix(DAY1)}a.jsonl"]
    assert store.list_day(DAY3) == [] and store.list_day(DAY2) == []


OUTSIDE_LAYOUT = ["year=2026/month=4/day=01/a.jsonl", "year=2026/month=13/day=01/a.jsonl",
                  "year=2026/month=04/day=1/a.jsonl", "year=2026/month=02/day=30/a.jsonl",
                  "year=2026/month=04/day=0\u00b2/a.jsonl", "year=2026/month=04/loose.jsonl", "loose.jsonl",
                  "day=01/a.jsonl"]


def put_outside_layout(put) -> None:
    for key in OUTSIDE_LAYOUT:
        put(key, jsonl([event(1)]))


def test_listing_names_what_is_outside_the_day_layout_instead_of_skipping_it(folder):
    from pipelines.events.assets import SensorCursor, plan_runs

    folder.put(DAY1, "a.jsonl", jsonl([event(2)]), [])

    def put(key, body):
        (folder.root / key).parent.mkdir(parents=True, exist_ok=True)
        (folder.root / key).write_bytes(body)

    put_outside_layout(put)
    put("_staging/b.jsonl", b"")  # writers' hidden staging names are no strays
    put("year=2026/.c.jsonl.partial", b"")
    listing = DirectoryEventStore(folder.root).list_days(date(2026, 1, 1))
    assert listing.days == [DAY1]
    assert listing.outside_layout == sorted(["year=2026/month=4/", "year=2026/month=13/", "year=2026/month=04/day=1/",
                                             "year=2026/month=02/day=30/", "year=2026/month=04/day=0\u00b2/",
                                             "year=2026/month=04/loose.jsonl", "loose.jsonl", "day=01/"])
    _, _, notes = plan_runs(DirectoryEventStore(folder.root), SensorCursor(), now=datetime(2026, 6, 1, tzinfo=UTC))
    assert notes == [f"8 folders or objects under {folder.root.resolve().as_uri()}/ are outside the layout "
                     "year=YYYY/month=MM/day=DD/ and are not ingested: day=01/, loose.jsonl, year=2026/month=02/day=30/, "
                     "year=2026/month=04/day=0\u00b2/, year=2026/month=04/day=1/ and 3 more"]


def test_day_folders_before_the_partitions_start_are_named_when_asked_for(folder):
    from pipelines.events.assets import SensorCursor, plan_runs

    for day in (date(2025, 12, 31), date(2026, 2, 27), date(2026, 3, 1), date(2026, 3, 2)):
        folder.put(day, "a.jsonl", jsonl([event(day.day)]), [])
    listing = DirectoryEventStore(folder.root).list_days(date(2026, 3, 2), report_earlier=True)
    assert listing.days == [date(2026, 3, 2)]
    assert listing.before_start == ["year=2025/", "year=2026/month=02/", "year=2026/month=03/day=01/"]
    # the sensor's first tick lists from the partitions' start and says what lies before it
    _, _, notes = plan_runs(DirectoryEventStore(folder.root), SensorCursor(), now=datetime(2026, 3, 5, tzinfo=UTC))
    assert notes == [f"1 day folders under {folder.root.resolve().as_uri()}/ are before partitions_start_date "
                     "2026-01-01 and are not ingested: year=2025/"]


def test_events_prefix_selects_the_store(settings, folder):
    assert isinstance(event_store_for(settings), DirectoryEventStore)
    assert isinstance(event_store_for(replace(settings, events_prefix=folder.root.as_uri())), DirectoryEventStore)
    s3 = event_store_for(replace(settings, events_prefix="s3://other/raw/events"))
    assert (s3.bucket, s3.prefix) == ("other", "raw/events")
    default = event_store_for(replace(settings, events_prefix="raw/events"))
    assert (default.bucket, default.prefix) == (settings.s3_bucket, "raw/events")


# -- crashes (a subprocess SIGKILLs itself at a failpoint) ---------------------------------------------

INGEST_SCRIPT = """
import sys
from dataclasses import replace
from datetime import date
from pipelines.events.ingest import ingest_day
from pipelines.settings import load_settings
settings = replace(load_settings(), events_prefix=sys.argv[1], lake_root=sys.argv[2])
ingest_day(settings, date.fromisoformat(sys.argv[3]), batch_lines=int(sys.argv[4]))
"""


def run_ingest(settings, day: date, failpoints: str = "", batch_lines: int = 7) -> int:
    env = dict(os.environ, LAKEHOUSE_FAILPOINTS=failpoints, LAKEHOUSE_DATA_DIR=str(settings.data_dir))
    done = subprocess.run(
        [sys.executable, "-c", INGEST_SCRIPT, settings.events_prefix, settings.lake_root, day.isoformat(),
         str(batch_lines)],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode in (0, -9), done.stderr[-3000:]
    return done.returncode


def objects_with_bad_lines(folder: Folder, day: date, first: int, count: int) -> None:
    for n in range(first, first + count):
        good = [event(100 * n + i) for i in range(4)]
        body = jsonl(good[:2]) + b"oops\n" + jsonl(good[2:])
        folder.put(day, f"o{n:02d}.jsonl", body, [e["eventId"] for e in good], [3])


@pytest.mark.parametrize(
    "failpoints",
    ["events.before_write:2", "events.after_quarantine_commit:1", "events.after_quarantine_commit:2",
     "events.after_commit:1", "events.after_commit:2"],
)
def test_sigkill_at_a_failpoint_then_rerun_ingests_every_object_once(settings, folder, failpoints):
    objects_with_bad_lines(folder, DAY1, 0, 6)
    assert run_ingest(settings, DAY1, failpoints) == -9
    assert run_ingest(settings, DAY1) == 0
    assert_exactly_once(settings, folder)


def test_crash_after_quarantine_then_new_objects_and_bigger_batches_still_once(settings, folder):
    # the retry sees more objects and other batch boundaries than the crashed run
    objects_with_bad_lines(folder, DAY1, 0, 6)
    assert run_ingest(settings, DAY1, "events.after_quarantine_commit:2", batch_lines=7) == -9
    objects_with_bad_lines(folder, DAY1, 6, 4)
    for name in ("a0", "z9"):
        folder.put(DAY1, f"{name}.jsonl", b"nope\n" + jsonl([event(7000 + len(name))]),
                   [event(7000 + len(name))["eventId"]], [1])
    assert run_ingest(settings, DAY1, "events.after_quarantine_commit:2", batch_lines=3) == -9
    assert run_ingest(settings, DAY1, batch_lines=1000) == 0
    assert_exactly_once(settings, folder)


def test_a_run_that_finds_another_between_its_two_commits_quarantines_each_line_once(settings, folder, monkeypatch):
    # run A has committed batch 1's quarantine lines; run B starts before A commits batch 1's rows, sees
    # "quarantine ahead of bronze", takes it for a crash, and a new object with a bad line has arrived
    from pipelines.events import ingest as events_ingest

    objects_with_bad_lines(folder, DAY1, 0, 2)
    hits = []

    def failpoint(name):
        hits.append(name)
        if hits == ["events.before_write", "events.after_quarantine_commit"]:  # A, between its commits
            folder.put(DAY1, "o3.jsonl", b"nope\n" + jsonl([event(8000)]), [event(8000)["eventId"]], [1])
            try:
                ingest_day(settings, DAY1)  # B
            except RuntimeError:
                pass
        elif name == "events.after_quarantine_commit" and len(hits) > 2:
            raise RuntimeError("B stops after a quarantine commit, as when A's bronze commit wins")

    monkeypatch.setattr(events_ingest, "failpoint", failpoint)
    try:
        ingest_day(settings, DAY1)  # A
    except ConcurrentIngestError:
        pass  # B committed batch 1 first
    monkeypatch.setattr(events_ingest, "failpoint", lambda name: None)
    ingest_day(settings, DAY1)
    assert_exactly_once(settings, folder)


# -- the sensor ---------------------------------------------------------------------------------------


def test_sensor_requests_runs_only_for_days_with_new_or_changed_objects(settings, folder, monkeypatch):
    from pipelines.events.assets import SensorCursor, bronze_events_sensor
    from pipelines.resources import LakehouseSettings

    monkeypatch.setenv("LAKEHOUSE_EVENTS_PREFIX", settings.events_prefix)
    resources = {"lakehouse": LakehouseSettings(data_dir=str(settings.data_dir))}

    def tick(cursor):
        with dg.build_sensor_context(cursor=cursor, resources=resources) as context:
            result = bronze_events_sensor(context)
        return sorted(r.partition_key for r in result.run_requests), result.cursor

    folder.put(DAY1, "a.jsonl", jsonl([event(1)]), [])
    folder.put(DAY2, "b.jsonl", jsonl([event(2)]), [])
    folder.put(date(2025, 6, 1), "before-start.jsonl", jsonl([event(3)]), [])
    keys, cursor = tick(None)
    assert keys == ["2026-03-01", "2026-03-02"]
    assert tick(cursor)[0] == []

    folder.put(DAY2, "c.jsonl", jsonl([event(4)]), [])
    keys, cursor = tick(cursor)
    assert keys == ["2026-03-02"]

    folder.put(DAY1, "a.jsonl", jsonl([event(5)]), [])  # rewritten: new ETag
    os.utime(folder.root / day_prefix(DAY1) / "a.jsonl", ns=(1, 1))
    keys, cursor = tick(cursor)
    assert keys == ["2026-03-01"]
    assert SensorCursor.parse(cursor).newest_day == DAY2


def test_sensor_lists_only_days_near_the_newest_it_saw(folder):
    from pipelines.events.assets import SensorCursor, plan_runs

    class CountingStore(DirectoryEventStore):
        def __init__(self, root):
            super().__init__(root)
            self.days_listed: list[date] = []

        def list_day(self, day):
            self.days_listed.append(day)
            return super().list_day(day)

    for offset in range(1, 29):
        folder.put(date(2026, 2, offset), "x.jsonl", jsonl([event(offset)]), [])
    store = CountingStore(folder.root)
    now = datetime(2026, 3, 10, tzinfo=UTC)
    requests, cursor, _ = plan_runs(store, SensorCursor(), now=now)
    assert len(requests) == 28 and len(store.days_listed) == 28
    store.days_listed.clear()
    requests, cursor, _ = plan_runs(store, cursor, now=now, lookback_days=3)
    assert requests == [] and store.days_listed == [date(2026, 2, d) for d in (25, 26, 27, 28)]
    assert sorted(cursor.fingerprints) == [f"2026-02-{d}" for d in (25, 26, 27, 28)]


def test_sensor_skips_days_after_the_last_partition(folder):
    from pipelines.events.assets import SensorCursor, plan_runs

    folder.put(date(2026, 12, 24), "future.jsonl", jsonl([event(1)]), [])
    requests, _, notes = plan_runs(DirectoryEventStore(folder.root), SensorCursor(),
                                   now=datetime(2026, 12, 20, tzinfo=UTC))
    assert requests == [] and "after the last partition" in notes[0]


# -- the Dagster asset --------------------------------------------------------------------------------


def test_asset_materializes_a_day_partition_with_metadata_and_lineage(settings, folder, monkeypatch, tmp_path):
    from lineage.emitter import LineageResource
    from pipelines.events.assets import bronze_events
    from pipelines.resources import LakehouseSettings

    mixed_objects(folder)
    monkeypatch.setenv("LAKEHOUSE_EVENTS_PREFIX", settings.events_prefix)
    monkeypatch.setenv("LAKEHOUSE_LAKE_ROOT", settings.lake_root)
    lineage_file = tmp_path / "lineage.jsonl"
    result = dg.materialize(
        [bronze_events],
        partition_key=DAY2.isoformat(),
        resources={"lakehouse": LakehouseSettings(data_dir=str(settings.data_dir)),
                   "lineage": LineageResource(lineage_file=str(lineage_file))},
    )
    assert result.success
    metadata = result.asset_materializations_for_node("bronze__events")[0].metadata
    assert metadata["lines_read"].value == 10  # 6 in truncated.jsonl, 4 non-blank in mixed.jsonl
    assert metadata["bronze_rows"].value == 7
    assert metadata["quarantined"].value == 3  # truncated line, non-JSON line, line without eventId
    assert metadata["objects_ingested"].value == 2
    assert "dagster/column_schema" in metadata and "dagster/row_count" in metadata
    events = [json.loads(line) for line in lineage_file.read_text().splitlines()]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    assert events[0]["job"]["name"] == "bronze.events"


def test_asset_run_without_partition_catches_up_on_every_day(settings, folder, monkeypatch, tmp_path):
    # what `materialize_all` (the demo, the end-to-end test) does: one run over every day prefix
    from lineage.emitter import LineageResource
    from pipelines.events.assets import bronze_events
    from pipelines.resources import LakehouseSettings

    mixed_objects(folder)
    (folder.root / "loose.jsonl").write_bytes(jsonl([event(99)]))
    monkeypatch.setenv("LAKEHOUSE_EVENTS_PREFIX", settings.events_prefix)
    monkeypatch.setenv("LAKEHOUSE_LAKE_ROOT", settings.lake_root)
    resources = {"lakehouse": LakehouseSettings(data_dir=str(settings.data_dir)),
                 "lineage": LineageResource(lineage_file=str(tmp_path / "lineage.jsonl"))}
    for _ in range(2):
        result = dg.materialize([bronze_events], resources=resources, selection=dg.AssetSelection.all())
        assert result.success
    metadata = result.asset_materializations_for_node("bronze__events")[0].metadata
    assert metadata["days"].value == 3 and metadata["objects_ingested"].value == 0
    assert metadata["outside_layout"].value == 1  # loose.jsonl, also named in a warning in the run's log
    assert_exactly_once(settings, folder)
