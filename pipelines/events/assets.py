"""Bronze events asset (one partition per S3 day prefix) and the sensor that asks for the days with news."""

# No `from __future__ import annotations`: Dagster inspects the `context` annotation at definition time.

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from lineage.emitter import LineageResource
from lineage.facets import DatasetId, dataset_for_delta_path, dataset_for_s3_object
from pipelines.events.ingest import TABLE, DayIngestResult, ingest_day
from pipelines.events.objects import (
    DayListing,
    EventStore,
    S3EventStore,
    day_prefix,
    event_store_for,
)
from pipelines.lake import delta_table_metadata, delta_table_stats, table_name_metadata
from pipelines.partitions import START_DATE, daily_partitions
from pipelines.resources import LakehouseSettings
from pipelines.settings import Settings

OWNER = "team:data-platform"
ASSET_KEY = dg.AssetKey(["bronze", TABLE])
# days before the newest seen day the sensor keeps looking at, for objects that arrive late
SENSOR_LOOKBACK_DAYS = 3
# DayIngestResult counters reported as materialization metadata (summed over the run's days)
COUNTS = ("objects_listed", "objects_ingested", "objects_skipped", "objects_rewritten",
          "objects_changed_while_reading", "lines_read", "bronze_rows", "quarantined", "commits")


def source_dataset(store: EventStore, day: date | None) -> DatasetId:
    """The day prefix a run reads (or the whole events prefix for a run over every day)."""
    relative = day_prefix(day) if day is not None else ""
    if isinstance(store, S3EventStore):
        return dataset_for_s3_object(store.bucket, f"{store.prefix}/{relative}")
    return dataset_for_delta_path(store.root / relative)


def days_to_ingest(context: dg.AssetExecutionContext, store: EventStore) -> DayListing:
    """The run's day partition(s); a run without partitions (materialize-all, the demo) catches up on
    every day prefix present, which is cheap for days already ingested (their objects are skipped)."""
    if context.has_partition_key_range:
        return DayListing([date.fromisoformat(key) for key in context.partition_keys], [])
    if context.has_partition_key:
        return DayListing([date.fromisoformat(context.partition_key)], [])
    return store.list_days(date.fromisoformat(START_DATE), report_earlier=True)


def s3_column_lineage(source: DatasetId) -> dict[str, list[tuple[str, str, str]]]:
    """Which part of the source object each bronze column comes from."""
    from_line = ["event_id", "event_type", "event_source", "event_ts", "version", "correlation_id", "user_id",
                 "session_id", "payload", "metadata", "envelope", "environment", "region", "raw_line"]
    lineage = {column: [(source.namespace, source.name, "line")] for column in from_line}
    lineage["object_key"] = [(source.namespace, source.name, "key")]
    lineage["etag"] = [(source.namespace, source.name, "etag")]
    lineage["object_day"] = [(source.namespace, source.name, "key")]
    lineage["bronze_id"] = [(source.namespace, source.name, c) for c in ("key", "etag", "line")]
    return lineage


@dg.asset(
    key=ASSET_KEY,
    group_name="bronze",
    kinds={"s3", "delta"},
    owners=[OWNER],
    metadata=table_name_metadata("bronze", TABLE),
    partitions_def=daily_partitions,
    # a range of days (a backfill, the catch-up of `lakehouse materialize`) is one run
    backfill_policy=dg.BackfillPolicy.single_run(),
    description=(
        "Business and user events the services drop into S3 (raw/events/year=/month=/day=/, JSON lines, "
        "optionally gzip), platform event schema and CloudEvents 1.0 mapped to the same columns, validated "
        "(required fields, UUIDs, ISO-8601 times, known event types), each object version exactly once. "
        "One partition per day prefix. Invalid lines go to bronze/quarantine; an object rewritten with a new "
        "ETag is ingested again and its older rows are marked superseded. Current events: "
        "row_kind = 'event' and superseded_at is null. A run without a partition catches up on every day."
    ),
)
def bronze_events(
    context: dg.AssetExecutionContext, lakehouse: LakehouseSettings, lineage: LineageResource
) -> dg.MaterializeResult:
    settings = lakehouse.load()
    store = event_store_for(settings)
    listing = days_to_ingest(context, store)
    days = listing.days
    for note in listing.notes(store.location, date.fromisoformat(START_DATE)):
        context.log.warning(note)
    source = source_dataset(store, days[0] if len(days) == 1 else None)
    target_path = settings.bronze_path(TABLE)
    target = dataset_for_delta_path(target_path)
    totals = DayIngestResult(days[0] if len(days) == 1 else None, store.location, target_path)
    with lineage.run(
        f"bronze.{TABLE}", inputs=[source], outputs=[target], parent=(context.job_name, context.run.run_id)
    ) as run:
        for day in days:
            result = ingest_day(settings, day, store=store)
            if result.lines_read != result.bronze_rows + result.quarantined:
                raise RuntimeError(
                    f"{store.location} {day}: read {result.lines_read} lines but committed {result.bronze_rows} "
                    f"rows and {result.quarantined} quarantined"
                )
            context.log.info(
                f"{store.location} {day}: {result.objects_ingested} objects ({result.objects_rewritten} rewritten, "
                f"{result.objects_skipped} already ingested), {result.lines_read} lines, {result.bronze_rows} rows, "
                f"{result.quarantined} quarantined, {result.commits} commits"
            )
            for name in (*COUNTS, "discovery_seconds"):
                setattr(totals, name, getattr(totals, name) + getattr(result, name))
        exists = _exists(settings)
        if exists:
            row_count, schema, _ = delta_table_stats(target_path, settings.delta_storage_options())
            run.set_output_stats(target, row_count=row_count, schema=schema)
            run.set_column_lineage(target, s3_column_lineage(source))
    metadata: dict = {
        "source": dg.MetadataValue.url(f"{store.location}/{day_prefix(days[0]) if len(days) == 1 else ''}"),
        "days": len(days),
        **{name: getattr(totals, name) for name in COUNTS},
        "discovery_seconds": round(totals.discovery_seconds, 4),
        "outside_layout": len(listing.outside_layout),
        "before_partitions_start": len(listing.before_start),
    }
    if exists:
        metadata.update(delta_table_metadata(target_path, settings.delta_storage_options()))
    return dg.MaterializeResult(metadata=metadata)


def _exists(settings: Settings) -> bool:
    from deltalake import DeltaTable

    return DeltaTable.is_deltatable(settings.bronze_path(TABLE), settings.delta_storage_options() or None)


# -- sensor -------------------------------------------------------------------------------------------


@dataclass
class SensorCursor:
    """Per recent day: a fingerprint of its (key, ETag) listing when a run was last asked for it."""

    newest_day: date | None = None
    fingerprints: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> "SensorCursor":
        if not text:
            return cls()
        data = json.loads(text)
        newest = data.get("newest_day")
        return cls(date.fromisoformat(newest) if newest else None, dict(data.get("fingerprints", {})))

    def dump(self) -> str:
        return json.dumps(
            {"newest_day": self.newest_day.isoformat() if self.newest_day else None,
             "fingerprints": dict(sorted(self.fingerprints.items()))},
            separators=(",", ":"),
        )

    def first_day(self, start: date, lookback_days: int) -> date:
        return start if self.newest_day is None else max(start, self.newest_day - timedelta(days=lookback_days))


def listing_fingerprint(objects) -> str:
    digest = hashlib.sha256()
    for o in sorted(objects, key=lambda o: o.key):
        digest.update(f"{o.key}\0{o.etag}\n".encode())
    return digest.hexdigest()[:32]


def plan_runs(store: EventStore, cursor: SensorCursor, *, now: datetime,
              lookback_days: int = SENSOR_LOOKBACK_DAYS) -> tuple[list[dg.RunRequest], SensorCursor, list[str]]:
    """Run requests for the day partitions whose listing changed since the cursor; the new cursor; notes.

    Only days from `lookback_days` before the newest day seen are listed (the first tick starts at
    the partitions' start), so a tick costs the same after a year of history as after a day.
    """
    start = date.fromisoformat(START_DATE)
    last_day = now.astimezone(UTC).date()  # the last partition: end_offset=1 makes today one
    first = cursor.first_day(start, lookback_days)
    requests: list[dg.RunRequest] = []
    notes: list[str] = []
    fingerprints = dict(cursor.fingerprints)
    newest = cursor.newest_day
    listing = store.list_days(first, report_earlier=first == start)
    notes.extend(listing.notes(store.location, start))
    for day in listing.days:
        if day > last_day:
            notes.append(f"{day_prefix(day)}: after the last partition {last_day}; skipped until then")
            continue
        listed = store.list_day(day)
        if not listed:
            continue
        newest = day if newest is None else max(newest, day)
        fingerprint = listing_fingerprint(listed)
        key = day.isoformat()
        if fingerprints.get(key) != fingerprint:
            fingerprints[key] = fingerprint
            requests.append(dg.RunRequest(run_key=f"{key}:{fingerprint}", partition_key=key))
    keep_from = SensorCursor(newest, {}).first_day(start, lookback_days).isoformat()
    new_cursor = SensorCursor(newest, {k: v for k, v in fingerprints.items() if k >= keep_from})
    return requests, new_cursor, notes


@dg.sensor(
    asset_selection=[ASSET_KEY],
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description=(
        "Lists the recent S3 day prefixes of raw events and requests a bronze/events run for each day "
        "whose objects (keys, ETags) changed since the last tick."
    ),
)
def bronze_events_sensor(context: dg.SensorEvaluationContext, lakehouse: LakehouseSettings) -> dg.SensorResult:
    settings = lakehouse.load()
    store = event_store_for(settings)
    requests, cursor, notes = plan_runs(store, SensorCursor.parse(context.cursor), now=datetime.now(UTC))
    for note in notes:  # what the sensor saw and did not ask to ingest, and why
        context.log.warning(note)
    return dg.SensorResult(run_requests=requests, cursor=cursor.dump())


events_assets = [bronze_events]
events_sensors = [bronze_events_sensor]
