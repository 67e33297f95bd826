"""Running assets from the command line, recorded in the same Dagster instance the UI reads."""

from __future__ import annotations

import fcntl
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg

from lineage.client import build_transport
from pipelines.settings import load_settings


INSTANCE_CONFIG = Path(__file__).resolve().parent / "instance" / "dagster.yaml"


def dagster_home() -> str:
    """DAGSTER_HOME if set, else `<data_dir>/dagster`, so `make ui` shows the runs of `make demo`; given
    our instance settings (the run queue's limits) if it has none."""
    home = Path(os.environ.get("DAGSTER_HOME") or load_settings().data_dir / "dagster")
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    if not (home / ".initialized").exists():
        _initialize(home)
    return str(home)


def _initialize(home: Path) -> None:
    """Make the instance's storage once, under a file lock: Dagster's SQLite storages create their
    tables when first opened, and two processes doing that at once (the UI and a schedule, two CLI
    runs) fail with `table runs already exists`."""
    with open(home / ".instance.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (home / ".initialized").exists():
            return
        if not (home / "dagster.yaml").exists():
            shutil.copyfile(INSTANCE_CONFIG, home / "dagster.yaml")
        with dg.DagsterInstance.get() as instance:
            instance.get_runs(limit=1)
        (home / ".initialized").touch()


@dataclass
class Materialization:
    """The run one `materialize_all` made."""

    run: dg.ExecuteInProcessResult

    @property
    def success(self) -> bool:
        return self.run.success

    def check_evaluations(self) -> list:
        return self.run.get_asset_check_evaluations()

    def materializations(self) -> list:
        return self.run.get_asset_materialization_events()


def _catch_up_range() -> tuple[date, date]:
    """From the first day with event objects in the source (today if none) to today."""
    from pipelines.events.objects import event_store_for
    from pipelines.partitions import START_DATE

    store = event_store_for(load_settings())
    last = datetime.now(UTC).date()
    days = [d for d in store.list_days(date.fromisoformat(START_DATE)).days if store.list_day(d)]
    return min(days, default=last), last


class SelectionError(ValueError):
    """An asset selection that is not valid or names no asset."""


def _selection(select: str, defs: dg.Definitions) -> dg.AssetSelection:
    if select == "*":
        return dg.AssetSelection.all()
    try:
        selection = dg.AssetSelection.from_string(select)
        selected = selection.resolve(defs.resolve_asset_graph())
    except dg.DagsterError as exc:
        raise SelectionError(f"--select {select!r} is not an asset selection: {str(exc).splitlines()[0]}") from exc
    if not selected:
        raise SelectionError(f"--select {select!r} matches no asset; keys look like bronze/cdc_orders, gold/fct_orders, "
                             "and groups are bronze, silver, gold (group:gold)")
    return selection


def materialize_all(select: str = "*", log_level: str = "INFO", days: tuple[date, date] | None = None) -> Materialization:
    """One run of the selected assets. With bronze/events, over the day partitions `days` (first, last;
    by default every day that has source data), as a backfill of that range would: bronze/events reads
    those days, dbt builds them in one invocation. Without it, the source is not listed and dbt takes
    in what bronze has (watermarks)."""
    dagster_home()
    # the definitions (and the partitions, which read the settings) load here, not when the CLI imports
    # this module for SelectionError: a broken setting must reach the user as one line
    from pipelines.definitions import defs
    from pipelines.events.assets import ASSET_KEY as EVENTS_ASSET
    from pipelines.partitions import partition_range
    from pipelines.schedules import lakehouse_job

    selection = _selection(select, defs)
    keys = selection.resolve(defs.resolve_asset_graph())
    build_transport()  # a broken OpenLineage config is the user's to fix before the run, not a failed step
    # a run of the job the schedules run, so the UI lists it under that job, not as an ad hoc asset run
    job = defs.resolve_job_def(lakehouse_job.name)
    with dg.DagsterInstance.get() as instance:
        run = job.execute_in_process(
            instance=instance, asset_selection=list(keys),
            tags=partition_range(*(days or _catch_up_range())) if EVENTS_ASSET in keys else {}, raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        )
    return Materialization(run)
