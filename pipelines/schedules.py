"""When the lakehouse runs by itself: every hour it refreshes today, every night it settles yesterday.

Both run every asset (bronze ingestion, then dbt, with all quality checks) for one day partition; the
dbt models also take in whatever bronze data is new, whatever its day. They ship stopped: turn them on in
the Dagster UI (Automation) once the sources are real.
"""

from datetime import UTC

import dagster as dg

from pipelines.partitions import yesterday

lakehouse_job = dg.define_asset_job(
    "lakehouse_all_assets",
    selection=dg.AssetSelection.all(),
    description="Bronze ingestion, silver and gold for one day partition (or a range, as one run).",
)


@dg.schedule(job=lakehouse_job, cron_schedule="15 * * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.STOPPED)
def hourly_refresh(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Today's partition, at a quarter past every hour: fresh figures for the current day."""
    day = context.scheduled_execution_time.astimezone(UTC).date().isoformat()
    return dg.RunRequest(run_key=f"hourly-{context.scheduled_execution_time.isoformat()}", partition_key=day)


@dg.schedule(job=lakehouse_job, cron_schedule="30 0 * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.STOPPED)
def daily_settle(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Yesterday's partition, half an hour after midnight UTC: the day's final figures, with the events
    and changes that arrived late."""
    day = yesterday(context.scheduled_execution_time).isoformat()
    return dg.RunRequest(run_key=f"daily-{day}", partition_key=day)


schedules = [hourly_refresh, daily_settle]
