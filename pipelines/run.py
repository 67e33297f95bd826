"""Running assets from the command line, recorded in the same Dagster instance the UI reads."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date

import dagster as dg

from pipelines.settings import load_settings


def dagster_home() -> str:
    """DAGSTER_HOME if set, else `<data_dir>/dagster`, so `make ui` shows the runs of `make demo`."""
    home = os.environ.get("DAGSTER_HOME") or str(load_settings().data_dir / "dagster")
    os.makedirs(home, exist_ok=True)
    os.environ["DAGSTER_HOME"] = home
    return home


@dataclass
class Materialization:
    """The runs one `materialize_all` made: one per event-day partition, then one for the rest."""

    runs: list[dg.ExecuteInProcessResult]

    @property
    def success(self) -> bool:
        return all(run.success for run in self.runs)

    def check_evaluations(self) -> list:
        return [c for run in self.runs for c in run.get_asset_check_evaluations()]

    def materializations(self) -> list:
        return [m for run in self.runs for m in run.get_asset_materialization_events()]


def _event_days() -> list[str]:
    """Day partitions of bronze/events that have objects in the source."""
    from pipelines.events.assets import START_DATE
    from pipelines.events.objects import event_store_for

    store = event_store_for(load_settings())
    return [d.isoformat() for d in store.list_days(date.fromisoformat(START_DATE)) if store.list_day(d)]


def materialize_all(select: str = "*", log_level: str = "INFO") -> Materialization:
    """Partitioned assets in the selection run once per partition that has source data; the
    unpartitioned ones in one run after them."""
    dagster_home()
    from pipelines.definitions import defs

    selection = dg.AssetSelection.from_string(select) if select != "*" else dg.AssetSelection.all()
    graph = defs.resolve_asset_graph()
    selected = selection.resolve(graph)
    partitioned = {key for key in selected if graph.get(key).partitions_def is not None}
    everything = list(defs.assets) + list(defs.asset_checks or [])
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    runs = []
    with dg.DagsterInstance.get() as instance:
        if partitioned:
            for day in _event_days():
                runs.append(dg.materialize(
                    everything, instance=instance, resources=defs.resources, partition_key=day,
                    selection=dg.AssetSelection.assets(*partitioned), raise_on_error=False, run_config=run_config,
                ))
        rest = selected - partitioned
        if rest:
            runs.append(dg.materialize(
                everything, instance=instance, resources=defs.resources,
                selection=dg.AssetSelection.assets(*rest), raise_on_error=False, run_config=run_config,
            ))
    return Materialization(runs)
