"""The lakehouse, in one screen: every asset, check, schedule, sensor and resource."""

import dagster as dg

from pipelines.cdc.assets import cdc_assets
from pipelines.resources import LakehouseSettings
from pipelines.transform.assets import dbt_model_assets, dbt_resource

defs = dg.Definitions(
    assets=[*cdc_assets, *dbt_model_assets],
    resources={
        "lakehouse": LakehouseSettings(),
        "dbt": dbt_resource(),
    },
)
