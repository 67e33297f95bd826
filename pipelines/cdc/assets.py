"""Bronze CDC assets: one per source table, each consuming its Debezium topic into Delta."""

import dagster as dg

from pipelines.cdc.discovery import undeclared_source_topics, undeclared_topics_note
from pipelines.cdc.ingest import CDC_STREAMS, TRANSACTIONS, bronze_table_name, ingest_topic, topic_for
from lineage.emitter import LineageResource
from lineage.facets import DatasetId, dataset_for_delta_path, dataset_for_kafka_topic
from pipelines.lake import delta_table_metadata, delta_table_stats, table_name_metadata
from pipelines.resources import LakehouseSettings
from pipelines.status import kafka_lag

OWNER = "team:data-platform"


def kafka_column_lineage(topic: DatasetId) -> dict[str, list[tuple[str, str, str]]]:
    """Which part of the Kafka record each bronze column comes from."""
    from_value = ["kind", "op", "source_connector", "source_database", "source_schema", "source_table", "before", "after", "unavailable_columns",
                  "lsn", "tx_id", "source_ts", "transaction", "raw_payload", "value_schema_id"]
    lineage = {column: [(topic.namespace, topic.name, "value")] for column in from_value}
    lineage["record_key"] = [(topic.namespace, topic.name, "key")]
    for column in ("partition", "offset", "kafka_ts"):
        lineage[column] = [(topic.namespace, topic.name, column.removeprefix("kafka_"))]
    lineage["bronze_id"] = [(topic.namespace, topic.name, c) for c in ("partition", "offset")]
    return lineage


def _describe(stream: str) -> str:
    if stream == TRANSACTIONS:
        what = "Every Debezium transaction metadata event (BEGIN/END with event counts per table)"
    else:
        what = f"Every Debezium change event of public.{stream}"
    return (
        f"{what}, as it arrived, exactly once: decoded before/after rows, op, LSN, tx id and Kafka "
        "position. Undecodable records go to bronze/quarantine. Reads up to the topic's high-water marks "
        "at the start of the run."
    )


def bronze_cdc_asset(stream: str) -> dg.AssetsDefinition:
    bronze_table = bronze_table_name(stream)

    @dg.asset(
        key=["bronze", bronze_table],
        group_name="bronze",
        kinds={"kafka", "delta"},
        owners=[OWNER],
        description=_describe(stream),
        metadata=table_name_metadata("bronze", bronze_table),
    )
    def _bronze_cdc(
        context: dg.AssetExecutionContext, lakehouse: LakehouseSettings, lineage: LineageResource
    ) -> dg.MaterializeResult:
        settings = lakehouse.load()
        topic = topic_for(settings, stream)
        source = dataset_for_kafka_topic(settings.kafka_bootstrap, topic)
        target_path = settings.bronze_path(bronze_table)
        target = dataset_for_delta_path(target_path)
        with lineage.run(
            f"bronze.{bronze_table}", inputs=[source], outputs=[target], parent=(context.job_name, context.run.run_id)
        ) as run:
            result = ingest_topic(settings, topic)
            if _exists(settings, bronze_table):
                row_count, schema, _ = delta_table_stats(target_path, settings.delta_storage_options())
                run.set_output_stats(target, row_count=row_count, schema=schema)
                run.set_column_lineage(target, kafka_column_lineage(source))
        context.log.info(
            f"{topic}: read {result.records_read}, bronze {result.bronze_rows}, quarantined {result.quarantined}"
        )
        metadata: dict = {
            "records_read": result.records_read,
            "bronze_rows_written": result.bronze_rows,
            "quarantined": result.quarantined,
            "commits": result.commits,
            # what the topic received while this run read it: what the next run starts with
            "kafka_lag_records": sum(kafka_lag(settings, [topic])[topic].values()),
            "offsets": dg.MetadataValue.json(
                {str(p): [result.start_offsets[p], result.end_offsets[p]] for p in result.start_offsets}
            ),
        }
        if _exists(settings, bronze_table):
            metadata.update(delta_table_metadata(target_path, settings.delta_storage_options()))
        if stream == TRANSACTIONS:  # the connector's own stream: whether it captures tables no asset ingests
            undeclared = undeclared_source_topics(settings)
            if undeclared:
                context.log.warning(undeclared_topics_note(undeclared))
            metadata["undeclared_source_topics"] = dg.MetadataValue.json(undeclared)
        return dg.MaterializeResult(metadata=metadata)

    return _bronze_cdc


def _exists(settings, bronze_table: str) -> bool:
    from deltalake import DeltaTable

    return DeltaTable.is_deltatable(settings.bronze_path(bronze_table), settings.delta_storage_options() or None)


cdc_assets = [bronze_cdc_asset(stream) for stream in CDC_STREAMS]
