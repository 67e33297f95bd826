"""Running assets from the command line, recorded in the same Dagster instance the UI reads."""

from __future__ import annotations

import os

import dagster as dg

from pipelines.settings import load_settings


def dagster_home() -> str:
    """DAGSTER_HOME if set, else `<data_dir>/dagster`, so `make ui` shows the runs of `make demo`."""
    home = os.environ.get("DAGSTER_HOME") or str(load_settings().data_dir / "dagster")
    os.makedirs(home, exist_ok=True)
    os.environ["DAGSTER_HOME"] = home
    return home


def materialize_all(select: str = "*", log_level: str = "INFO") -> dg.ExecuteInProcessResult:
    dagster_home()
    from pipelines.definitions import defs

    selection = dg.AssetSelection.from_string(select) if select != "*" else dg.AssetSelection.all()
    with dg.DagsterInstance.get() as instance:
        return dg.materialize(
            list(defs.assets) + list(defs.asset_checks or []),
            instance=instance,
            resources=defs.resources,
            selection=selection,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        )
