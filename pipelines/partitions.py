"""The lakehouse's one time partitioning: UTC days. bronze/events reads one S3 day prefix per partition;
the dbt models get a partition range as the vars `start_date`/`end_date` (one dbt invocation per run)."""

from datetime import UTC, date, datetime, timedelta

import dagster as dg

from pipelines.settings import load_settings

# a setting (partitions_start_date), read when the definitions load: the partitions are part of them
START_DATE = load_settings().partitions_start_date
# end_offset=1: today is a partition too (services write into today's prefix all day, and the hourly
# schedule refreshes today's figures)
daily_partitions = dg.DailyPartitionsDefinition(start_date=START_DATE, timezone="UTC", end_offset=1)


def dbt_vars_for(window: dg.TimeWindow | None) -> dict[str, str]:
    """dbt vars of a run: the days [start_date, end_date) it (re)builds; none for an unpartitioned run,
    which builds everything."""
    if window is None:
        return {}
    return {"start_date": window.start.date().isoformat(), "end_date": window.end.date().isoformat()}


def partition_range(first: date, last: date) -> dict[str, str]:
    """Run tags of one run over the day partitions first..last (inclusive)."""
    return {
        "dagster/asset_partition_range_start": first.isoformat(),
        "dagster/asset_partition_range_end": last.isoformat(),
    }


def yesterday(now: datetime) -> date:
    return now.astimezone(UTC).date() - timedelta(days=1)
