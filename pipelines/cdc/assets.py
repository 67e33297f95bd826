"""Bronze CDC assets: one per source table, each consuming its Debezium topic into Delta."""

import dagster as dg

from pipelines.cdc.ingest import SOURCE_TABLES, ingest_topic, topic_for
from pipelines.lake import delta_table_metadata
from pipelines.resources import LakehouseSettings

OWNER = "team:data-platform"


def bronze_cdc_asset(table: str) -> dg.AssetsDefinition:
    bronze_table = f"cdc_{table}"

    @dg.asset(
        key=["bronze", bronze_table],
        group_name="bronze",
        kinds={"kafka", "delta"},
        owners=[OWNER],
        description=(
            f"Every Debezium change event of public.{table}, as it arrived, exactly once: decoded "
            "before/after rows, op, LSN, tx id and Kafka position. Undecodable records go to "
            "bronze/quarantine. Reads up to the topic's high-water marks at the start of the run."
        ),
    )
    def _bronze_cdc(context: dg.AssetExecutionContext, lakehouse: LakehouseSettings) -> dg.MaterializeResult:
        settings = lakehouse.load()
        topic = topic_for(settings, table)
        result = ingest_topic(settings, topic)
        context.log.info(
            f"{topic}: read {result.records_read}, bronze {result.bronze_rows}, quarantined {result.quarantined}"
        )
        metadata: dict = {
            "records_read": result.records_read,
            "bronze_rows_written": result.bronze_rows,
            "quarantined": result.quarantined,
            "commits": result.commits,
            "offsets": dg.MetadataValue.json(
                {str(p): [result.start_offsets[p], result.end_offsets[p]] for p in result.start_offsets}
            ),
        }
        if result.commits or _exists(settings, bronze_table):
            metadata.update(delta_table_metadata(result.table_path, settings.delta_storage_options()))
        return dg.MaterializeResult(metadata=metadata)

    return _bronze_cdc


def _exists(settings, bronze_table: str) -> bool:
    from deltalake import DeltaTable

    return DeltaTable.is_deltatable(settings.bronze_path(bronze_table), settings.delta_storage_options() or None)


cdc_assets = [bronze_cdc_asset(table) for table in SOURCE_TABLES]
