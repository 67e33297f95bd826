"""The lakehouse, in one screen: every asset, check, schedule, sensor and resource."""

import dagster as dg

from lineage.emitter import LineageResource
from pipelines.cdc.assets import cdc_assets
from pipelines.events.assets import events_assets, events_sensors
from pipelines.resources import LakehouseSettings
from pipelines.schedules import lake_maintenance, lakehouse_job, schedules, sensors
from pipelines.transform.assets import dbt_model_assets, dbt_resource
from quality.checks import build_quality_checks

assets = [*cdc_assets, *events_assets, *dbt_model_assets]

defs = dg.Definitions(
    assets=assets,
    # a Great Expectations suite (quality/rules.yml) on every asset; ERROR failures block downstream.
    # dbt models carry theirs as the `gx_suite` dbt test, so that it runs inside `dbt build`, between a
    # model and its children.
    asset_checks=build_quality_checks([key for asset in [*cdc_assets, *events_assets] for key in asset.keys]),
    jobs=[lakehouse_job, lake_maintenance],
    schedules=schedules,
    sensors=[*events_sensors, *sensors],
    resources={
        "lakehouse": LakehouseSettings(),
        "dbt": dbt_resource(),
        "lineage": LineageResource(),
    },
)
