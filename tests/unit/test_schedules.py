"""Schedules, partitions and the dbt vars they turn into."""

import json
from datetime import UTC, datetime

import dagster as dg

from pipelines.definitions import defs
from pipelines.partitions import daily_partitions, dbt_vars_for
from pipelines.transform.assets import dbt_build_args


def _tick(name: str, instance: dg.DagsterInstance, at: datetime = datetime(2026, 3, 1, 3, 15, tzinfo=UTC)):
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=at,
                                   repository_def=defs.get_repository_def()) as context:
        return defs.get_schedule_def(name).evaluate_tick(context)


def _request(name: str, at: datetime) -> dg.RunRequest:
    with dg.instance_for_test() as instance:
        return _tick(name, instance, at).run_requests[0]


def test_hourly_refreshes_today_and_daily_settles_yesterday():
    at = datetime(2026, 3, 1, 0, 30, tzinfo=UTC)
    assert _request("hourly_refresh", at).partition_key == "2026-03-01"
    assert _request("daily_settle", at).partition_key == "2026-02-28"
    assert defs.get_schedule_def("hourly_refresh").cron_schedule == "15 * * * *"
    assert defs.get_schedule_def("daily_settle").cron_schedule == "30 0 * * *"


def test_schedules_run_every_asset_with_its_checks():
    job = defs.resolve_job_def("lakehouse_all_assets")
    graph = defs.resolve_asset_graph()
    assert set(job.asset_layer.selected_asset_keys) == set(graph.materializable_asset_keys)
    assert job.asset_layer.asset_graph.asset_check_keys == graph.asset_check_keys


def test_a_range_of_days_is_one_dbt_invocation_with_the_range_as_vars():
    window = dg.TimeWindow(datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 2, 6, tzinfo=UTC))
    assert dbt_vars_for(window) == {"start_date": "2026-02-01", "end_date": "2026-02-06"}
    assert dbt_vars_for(None) == {}
    assert dbt_build_args(window) == ["build", "--vars", json.dumps({"start_date": "2026-02-01", "end_date": "2026-02-06"})]
    assert dbt_build_args(None) == ["build"]
    models = defs.resolve_asset_graph().get(dg.AssetKey(["gold", "agg_daily_sales"]))
    assert models.partitions_def == daily_partitions
    assert models.backfill_policy == dg.BackfillPolicy.single_run()


def test_hourly_refresh_and_upkeep_skip_a_tick_while_the_other_runs():
    with dg.instance_for_test() as instance:
        assert _tick("hourly_refresh", instance).run_requests and _tick("nightly_maintenance", instance).run_requests
        upkeep = instance.create_run_for_job(defs.resolve_job_def("lake_maintenance"), status=dg.DagsterRunStatus.STARTED)
        skipped = _tick("hourly_refresh", instance)
        assert not skipped.run_requests and "lake_maintenance is running" in skipped.skip_message
        instance.report_run_canceled(upkeep)
        assert _tick("hourly_refresh", instance).run_requests
        instance.create_run_for_job(defs.resolve_job_def("lakehouse_all_assets"), status=dg.DagsterRunStatus.STARTED)
        skipped = _tick("nightly_maintenance", instance)
        assert not skipped.run_requests and "lakehouse_all_assets is running" in skipped.skip_message


def test_runs_that_write_the_lake_queue_behind_each_other(tmp_path, monkeypatch):
    from pipelines.run import dagster_home

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv("LAKEHOUSE_DATA_DIR", str(tmp_path))
    home = dagster_home()
    assert home == str(tmp_path / "dagster")
    with dg.DagsterInstance.from_config(home) as instance:
        config = instance.get_concurrency_config()
    assert config.run_queue_config.tag_concurrency_limits == [{"key": "lakehouse/writes", "value": "lake", "limit": 1}]
    for job in ("lakehouse_all_assets", "lake_maintenance"):
        assert defs.resolve_job_def(job).tags["lakehouse/writes"] == "lake"
    # however a run starts (UI materialization, backfill, schedule), its dbt op waits for any other
    assert config.pool_config.default_pool_limit == 1
    dbt_op = next(a for a in defs.assets if a.node_def.name == "lakehouse_dbt_models")
    assert dbt_op.node_def.pool == "dbt"
    # an instance that has its own settings keeps them
    (tmp_path / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    dagster_home()
    assert (tmp_path / "dagster" / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"


def test_continuous_refresh_asks_for_the_changed_event_days_or_today_and_never_two_runs_at_once(tmp_path, monkeypatch):
    from pipelines.resources import LakehouseSettings
    from pipelines.schedules import continuous_refresh

    events = tmp_path / "events"
    monkeypatch.setenv("LAKEHOUSE_EVENTS_PREFIX", str(events))
    resources = {"lakehouse": LakehouseSettings(data_dir=str(tmp_path))}
    for day in ("01", "03"):
        folder = events / f"year=2026/month=03/day={day}"
        folder.mkdir(parents=True)
        (folder / "a.jsonl").write_text('{"eventId": "x"}\n')

    def tick(instance, cursor):
        with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
            return continuous_refresh(context)

    with dg.instance_for_test() as instance:
        first = tick(instance, None)
        (run,) = first.run_requests  # both changed days in one run, as a range
        assert run.tags["dagster/asset_partition_range_start"] == "2026-03-01"
        assert run.tags["dagster/asset_partition_range_end"] == "2026-03-03"
        (quiet,) = tick(instance, first.cursor).run_requests  # nothing changed: today, for the CDC topics
        assert quiet.partition_key == datetime.now(UTC).date().isoformat()

        busy = instance.create_run_for_job(defs.resolve_job_def("lakehouse_all_assets"), status=dg.DagsterRunStatus.STARTED)
        skipped = tick(instance, first.cursor)
        assert isinstance(skipped, dg.SkipReason) and "lakehouse_all_assets is running" in skipped.skip_message
        instance.report_run_canceled(busy)
        assert tick(instance, first.cursor).run_requests
