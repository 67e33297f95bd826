"""When the lakehouse runs by itself: every hour it refreshes today, every night it settles yesterday
and then tidies the lake's files; or, for gold within minutes, a sensor refreshes every minute.

The refresh and the settle run every asset (bronze ingestion, then dbt, with all quality checks) for one
day partition; the dbt models also take in whatever bronze data is new, whatever its day. The schedules
ship stopped: turn them on in the Dagster UI (Automation) once the sources are real.
"""

from datetime import UTC, date, datetime

import dagster as dg

from pipelines.events.assets import SensorCursor, plan_runs
from pipelines.events.objects import event_store_for
from pipelines.maintenance import maintain_lake
from pipelines.partitions import partition_range, yesterday
from pipelines.resources import LakehouseSettings

# runs with this tag queue behind each other (pipelines/instance/dagster.yaml)
WRITES_LAKE = {"lakehouse/writes": "lake"}

lakehouse_job = dg.define_asset_job(
    "lakehouse_all_assets",
    selection=dg.AssetSelection.all(),
    description="Bronze ingestion, silver and gold for one day partition (or a range, as one run).",
    tags=WRITES_LAKE,
)


# A compaction commit and a MERGE that read the same files cannot both commit: the second one fails.
# The hourly refresh and the nightly upkeep therefore skip a tick while the other one runs.
_BUSY = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED,
         dg.DagsterRunStatus.CANCELING]


def _running(context: dg.ScheduleEvaluationContext | dg.SensorEvaluationContext, job_name: str) -> bool:
    return bool(context.instance.get_run_ids(dg.RunsFilter(job_name=job_name, statuses=_BUSY), limit=1))


@dg.schedule(job=lakehouse_job, cron_schedule="15 * * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.STOPPED)
def hourly_refresh(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    """Today's partition, at a quarter past every hour: fresh figures for the current day."""
    if _running(context, lake_maintenance.name):
        return dg.SkipReason("lake_maintenance is running (its compaction would fail this run's MERGEs); "
                             "the next hour's refresh takes in everything new")
    day = context.scheduled_execution_time.astimezone(UTC).date().isoformat()
    return dg.RunRequest(run_key=f"hourly-{context.scheduled_execution_time.isoformat()}", partition_key=day)


@dg.schedule(job=lakehouse_job, cron_schedule="30 0 * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.STOPPED)
def daily_settle(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Yesterday's partition, half an hour after midnight UTC: the day's final figures, with the events
    and changes that arrived late."""
    day = yesterday(context.scheduled_execution_time).isoformat()
    return dg.RunRequest(run_key=f"daily-{day}", partition_key=day)


@dg.op
def compact_and_vacuum(context: dg.OpExecutionContext, lakehouse: LakehouseSettings) -> dg.Output[None]:
    """Compact every Delta table's small files and vacuum the files no version within the retention
    needs (pipelines/maintenance.py); fails, after trying every table, if any table could not be done."""
    results = maintain_lake(lakehouse.load())
    for r in results:
        context.log.info(r.summary())
    failed = [r for r in results if r.error is not None]
    if failed:
        raise dg.Failure(f"{len(failed)} of {len(results)} tables not maintained (retried next run)",
                         metadata={r.table: r.error for r in failed})
    return dg.Output(None, metadata={
        "tables": len(results),
        "files compacted": sum(r.files_compacted for r in results),
        "files deleted": sum(r.files_deleted for r in results),
    })


@dg.job(description="Compact and vacuum every Delta table of the lake.", tags=WRITES_LAKE)
def lake_maintenance():
    compact_and_vacuum()


@dg.schedule(job=lake_maintenance, cron_schedule="0 3 * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.STOPPED)
def nightly_maintenance(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    """At 03:00 UTC, clear of the daily settle: MERGEs rewrite files every hour, and without a vacuum the
    lake keeps every rewritten copy."""
    if _running(context, lakehouse_job.name):
        return dg.SkipReason(f"{lakehouse_job.name} is running (compaction would fail its MERGEs); upkeep waits a night")
    return dg.RunRequest(run_key=f"maintenance-{context.scheduled_execution_time.date().isoformat()}")


@dg.sensor(job=lakehouse_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED,
           description="Continuous mode: a refresh every minute (what `lakehouse run --continuous` does), over "
                       "the event days whose S3 listing changed, or today; never two at once.")
def continuous_refresh(context: dg.SensorEvaluationContext, lakehouse: LakehouseSettings) -> dg.SensorResult | dg.SkipReason:
    for busy in (lakehouse_job.name, lake_maintenance.name):
        if _running(context, busy):
            return dg.SkipReason(f"{busy} is running; the next tick takes in everything new")
    now = datetime.now(UTC)
    requests, cursor, _ = plan_runs(event_store_for(lakehouse.load()), SensorCursor.parse(context.cursor), now=now)
    days = sorted(r.partition_key for r in requests) or [now.date().isoformat()]
    run = (dg.RunRequest(partition_key=days[0]) if len(days) == 1
           else dg.RunRequest(tags=partition_range(date.fromisoformat(days[0]), date.fromisoformat(days[-1]))))
    return dg.SensorResult(run_requests=[run], cursor=cursor.dump())


schedules = [hourly_refresh, daily_settle, nightly_maintenance]
sensors = [continuous_refresh]
