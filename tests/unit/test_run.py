"""`lakehouse materialize` (and the demo): one run of the selected assets, recorded in the instance."""

from datetime import date

import dagster as dg

from pipelines import run as run_module
from pipelines.run import materialize_all


def test_a_command_line_run_is_a_run_of_the_scheduled_job(tmp_path, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("LAKEHOUSE_CONFIG", raising=False)
    # the days come from listing the event source, which a unit test does not have
    monkeypatch.setattr(run_module, "_catch_up_range", lambda: (date(2026, 1, 5), date(2026, 1, 6)))

    result = materialize_all(select="gold/dim_date", log_level="WARNING")

    assert result.success
    run = result.run.dagster_run
    # listed in the UI under the job the schedules run, with its queue tag and the run's days
    assert run.job_name == "lakehouse_all_assets"
    assert run.tags["lakehouse/writes"] == "lake"
    assert (run.tags["dagster/asset_partition_range_start"], run.tags["dagster/asset_partition_range_end"]) == (
        "2026-01-05", "2026-01-06")
    assert {m.asset_key for m in result.materializations()} == {dg.AssetKey(["gold", "dim_date"])}
    assert {(e.asset_key, e.check_name, e.passed) for e in result.check_evaluations()} >= {
        (dg.AssetKey(["gold", "dim_date"]), "gx_suite", True)}
