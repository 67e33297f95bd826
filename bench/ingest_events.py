"""Benchmark (issue 5): bronze events ingest (S3 JSON lines → Delta) against download + polars parse.

    .venv/bin/python bench/ingest_events.py [--events 1000000] [--objects 1000] [--days 20]

Starts only the S3 component (moto server) of the local stack in a temp data dir, uploads N events in
M objects spread over D day prefixes (`raw/events/year=/month=/day=/`), shaped exactly like the
workload's events (real events of `pipelines.workload.simulation`, each copy with its own eventId),
then, in the same run and against the same objects:

  baseline  list each day prefix, download every object (8 threads) and parse it with
            `polars.read_ndjson`; nothing else
  ours      `pipelines.events.ingest.ingest_day` for each day into a fresh temp lake (validation,
            quarantine, Delta commits with the exactly-once record); afterwards the bronze row count
            (Delta log stats) must equal N

Stages run in the order of `--stages` (default baseline,ours,baseline; best run of each counts).
Then the listing cost: the time to discover the objects of one new day prefix (list it, and read what
bronze holds for it) after 1, D/2 and D earlier days were ingested; it must not grow with them.

Writes bench/results/ingest_events.json: `ratio` (ours / baseline), both rates, counts, listing cost.
Target: ratio >= 0.5.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import random
import shutil
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from _measure import machine, rate_summary, stages_from, utc_timestamp, write_result  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "ingest_events.json"
PREFIX = "raw/events"
FIRST_DAY = date(2026, 3, 1)
THREADS = 8


def workload_lines(count: int = 20_000, seed: int = 5) -> list[str]:
    """Real events of the workload simulation, as the workload writes them (one JSON line each)."""
    from pipelines.workload.simulation import WorkloadConfig, simulate

    config = WorkloadConfig(seed=seed, customers=2_000, days=30)
    lines: list[str] = []
    for tx in simulate(config):
        lines.extend(json.dumps(e.to_json(), ensure_ascii=False, separators=(",", ":")) for e in tx.events)
        if len(lines) >= count:
            break
    return lines[:count]


def object_bodies(events: int, objects: int, pool: list[str], rng: random.Random):
    """(object index, body) with `events` lines in total; every line gets a fresh eventId."""
    per, extra = divmod(events, objects)
    position = 0
    for index in range(objects):
        n = per + (index < extra)
        out = []
        for _ in range(n):
            line = pool[position % len(pool)]
            position += 1
            old_id = line[12:48]  # `{"eventId":"<36 chars>"`
            out.append(line.replace(old_id, str(uuid.UUID(int=rng.getrandbits(128), version=4)), 1))
        yield index, ("\n".join(out) + "\n").encode()


def start_s3(data_dir: Path):
    """Only the S3 component of pipelines.stack (moto server with the raw bucket)."""
    from pipelines.settings import load_settings
    from pipelines.stack import Stack

    stack = Stack(load_settings({"LAKEHOUSE_DATA_DIR": str(data_dir)}))
    stack.up(only=["s3"])
    # reloaded: the settings now read the started S3's endpoint from the stack's state file
    return stack, load_settings({"LAKEHOUSE_DATA_DIR": str(data_dir)})


def day_of(index: int, objects: int, days: int) -> date:
    return FIRST_DAY + timedelta(days=index * days // objects)


def upload(settings, events: int, objects: int, days: int) -> dict:
    from pipelines.events.objects import S3EventStore, day_prefix

    store = S3EventStore(settings, settings.s3_bucket, PREFIX, max_pool=THREADS)
    pool = workload_lines()
    rng = random.Random(7)
    started = time.perf_counter()
    total = 0

    def put(item):
        index, body = item
        key = f"{PREFIX}/{day_prefix(day_of(index, objects, days))}events-{index:06d}.jsonl"
        store.client.put_object(Bucket=settings.s3_bucket, Key=key, Body=body)
        return len(body)

    with ThreadPoolExecutor(THREADS) as executor:
        for size in executor.map(put, object_bodies(events, objects, pool, rng)):
            total += size
    return {"bytes": total, "seconds": time.perf_counter() - started}


def run_baseline(settings, days: int) -> dict:
    import polars as pl

    from pipelines.events.objects import S3EventStore

    store = S3EventStore(settings, settings.s3_bucket, PREFIX, max_pool=THREADS)
    started = time.perf_counter()
    rows = 0

    def download(info) -> bytes:
        return store.client.get_object(Bucket=settings.s3_bucket, Key=info.key)["Body"].read()

    with ThreadPoolExecutor(THREADS) as executor:
        for offset in range(days):
            listed = store.list_day(FIRST_DAY + timedelta(days=offset))
            for body in executor.map(download, listed):
                # full schema inference: the payload's fields differ per event type (and are null at first)
                rows += pl.read_ndjson(io.BytesIO(body), infer_schema_length=None).height
    return {"events": rows, "seconds": time.perf_counter() - started}


def run_ours(settings, days: int) -> dict:
    from pipelines.events.ingest import ingest_day

    started = time.perf_counter()
    totals = {"events": 0, "quarantined": 0, "objects": 0, "commits": 0}
    for offset in range(days):
        result = ingest_day(settings, FIRST_DAY + timedelta(days=offset), threads=THREADS)
        totals["events"] += result.bronze_rows
        totals["quarantined"] += result.quarantined
        totals["objects"] += result.objects_ingested
        totals["commits"] += result.commits
    totals["seconds"] = time.perf_counter() - started
    return totals


def discovery_seconds(settings, day: date, repeat: int = 5) -> dict:
    """Best of `repeat`, for what a run does first: list one day prefix (S3), and open bronze and read
    what it holds for that day (Delta log + the day's object rows)."""
    from pipelines.events.ingest import DayTables
    from pipelines.events.objects import event_store_for

    store = event_store_for(settings)
    listing = state = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        listed = store.list_day(day)
        listed_at = time.perf_counter()
        tables = DayTables(settings, day)
        _pending = [o for o in listed if tables.current.get(o.key) != o.etag]
        done = time.perf_counter()
        listing, state = min(listing, listed_at - started), min(state, done - listed_at)
    return {"s3_listing": round(listing, 4), "bronze_state": round(state, 4)}


def listing_cost(settings, lake: Path, days: int) -> dict:
    """Discovery time for a new day after 1 and after `days` earlier days were ingested."""
    from pipelines.events.ingest import ingest_day

    probe = FIRST_DAY + timedelta(days=days + 30)
    bodies = object_bodies(50 * 20, 20, workload_lines(2_000), random.Random(11))
    from pipelines.events.objects import S3EventStore, day_prefix

    store = S3EventStore(settings, settings.s3_bucket, PREFIX)
    for index, body in bodies:
        store.client.put_object(Bucket=settings.s3_bucket, Key=f"{PREFIX}/{day_prefix(probe)}probe-{index}.jsonl",
                                Body=body)
    lake_settings = replace(settings, lake_root=str(lake))
    out = {"probe_day_objects": 20}
    ingested = 0
    for offset in range(days):
        ingested += ingest_day(lake_settings, FIRST_DAY + timedelta(days=offset), threads=THREADS).objects_ingested
        if offset + 1 in (1, max(1, days // 2), days):
            out[f"after_{offset + 1}_days_seconds"] = discovery_seconds(lake_settings, probe)
            out[f"after_{offset + 1}_days_objects_ingested"] = ingested
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--objects", type=int, default=1_000)
    parser.add_argument("--days", type=int, default=20, help="day prefixes the objects are spread over")
    parser.add_argument("--stages", default="baseline,ours,baseline")
    parser.add_argument("--output", default=str(RESULTS), help="result JSON ('-' = do not write)")
    args = parser.parse_args()
    stages = stages_from(parser, args.stages, {"baseline", "ours"})

    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-events-"))
    stack = None
    try:
        t0 = time.monotonic()
        stack, settings = start_s3(tmp / "data")
        print(f"s3 (moto) up at {settings.s3_endpoint_url} in {time.monotonic() - t0:.1f} s", flush=True)
        uploaded = upload(settings, args.events, args.objects, args.days)
        print(f"uploaded {args.events:,} events in {args.objects:,} objects over {args.days} days "
              f"({uploaded['bytes'] / 1e6:,.0f} MB) in {uploaded['seconds']:.1f} s", flush=True)

        runs: dict[str, list[dict]] = {"baseline": [], "ours": []}
        for i, stage in enumerate(stages):
            gc.collect()
            lake = tmp / f"lake{i}"
            run_settings = replace(settings, lake_root=str(lake))
            out = run_baseline(run_settings, args.days) if stage == "baseline" else run_ours(run_settings, args.days)
            if out["events"] != args.events:
                raise RuntimeError(f"{stage} got {out['events']} events, expected {args.events}")
            if stage == "ours":
                from pipelines.lake import delta_table_stats

                rows = delta_table_stats(run_settings.bronze_path("events"))[0] - out["objects"]
                if rows != args.events or out["quarantined"]:
                    raise RuntimeError(f"bronze holds {rows} event rows ({out['quarantined']} quarantined)")
                shutil.rmtree(lake, ignore_errors=True)
            out["events_per_s"] = out["events"] / out["seconds"]
            runs[stage].append(out)
            print(f"  {stage:8s} {out['events_per_s']:>10,.0f} events/s  {out['seconds']:7.1f} s", flush=True)

        listing = listing_cost(settings, tmp / "lake-listing", args.days)
        print(f"  discovery of a new day: {listing}", flush=True)

        result: dict = {
            "events": args.events,
            "objects": args.objects,
            "days": args.days,
            "machine": machine(),
            "timestamp": utc_timestamp(),
            **rate_summary(runs),
        }
        result["listing_cost"] = listing
        result["details"] = {
            "stages": stages,
            "baseline_runs_events_per_s": [round(r["events_per_s"]) for r in runs["baseline"]],
            "ours_runs_events_per_s": [round(r["events_per_s"]) for r in runs["ours"]],
            "ours_commits": [r["commits"] for r in runs["ours"]],
            "bytes": uploaded["bytes"],
            "line_bytes_avg": round(uploaded["bytes"] / args.events),
            "download_threads": THREADS,
            "target": "ratio >= 0.5; discovery time flat in the number of earlier days",
        }
        print()
        if "baseline_events_per_s" in result:
            print(f"baseline (download + polars): {result['baseline_events_per_s']:>10,} events/s")
        if "ours_events_per_s" in result:
            print(f"ours (ingest_day):            {result['ours_events_per_s']:>10,} events/s")
        if "ratio" in result:
            print(f"ratio ours/baseline:          {result['ratio']:.3f}   "
                  f"({'PASS' if result['ratio'] >= 0.5 else 'FAIL'}: target >= 0.5)")
        write_result(args.output, result)
        return 0
    finally:
        if stack is not None:
            stack.down(purge=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
