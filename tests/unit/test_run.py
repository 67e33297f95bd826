"""`lakehouse materialize` (and the demo): one run of the selected assets, recorded in the instance."""

import os
import subprocess
import sys

import dagster as dg

from pipelines.run import materialize_all


def test_a_command_line_run_is_a_run_of_the_scheduled_job(tmp_path, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("LAKEHOUSE_CONFIG", raising=False)
    # relative to where the command starts, not to dbt_project/ where dbt starts
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LAKEHOUSE_LAKE_ROOT", "relative-lake")
    # the event source (S3, absent here) is listed only when bronze/events is selected
    monkeypatch.setenv("LAKEHOUSE_S3_ENDPOINT_URL", "http://127.0.0.1:1")

    result = materialize_all(select="gold/dim_date", log_level="WARNING")

    assert result.success
    run = result.run.dagster_run
    # listed in the UI under the job the schedules run, with its queue tag
    assert run.job_name == "lakehouse_all_assets"
    assert run.tags["lakehouse/writes"] == "lake"
    assert "dagster/asset_partition_range_start" not in run.tags
    assert {m.asset_key for m in result.materializations()} == {dg.AssetKey(["gold", "dim_date"])}
    assert (tmp_path / "relative-lake" / "gold" / "dim_date" / "_delta_log").is_dir()
    assert {(e.asset_key, e.check_name, e.passed) for e in result.check_evaluations()} >= {
        (dg.AssetKey(["gold", "dim_date"]), "gx_suite", True)}


OPEN_INSTANCE = """
import dagster as dg
from pipelines.run import dagster_home
dagster_home()
with dg.DagsterInstance.get() as instance:
    instance.get_runs(limit=1)
"""


def test_processes_that_open_a_new_instance_at_once_all_succeed(tmp_path):
    # the UI, a schedule and a CLI run starting together on a fresh DAGSTER_HOME: before the lock,
    # SQLite storage creation raced (`table runs already exists`, `UNIQUE constraint failed: alembic_version`)
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home")}
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_INSTANCE], env=env, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    failures = [err.splitlines()[-1] for p in procs if (err := p.communicate()[1]) and p.returncode]
    assert failures == []
