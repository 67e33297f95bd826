"""Dataset naming (OpenLineage naming spec) and facet builders for our datasets.

Naming, per https://openlineage.io/docs/spec/naming: Kafka `kafka://host:port` + topic; S3 `s3://bucket` +
key; local files `file` + absolute path; Postgres `postgres://host:port` + `db.schema.table`. A Delta table
is named by its directory, like any file-based dataset.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa
from openlineage.client.event_v2 import Dataset, InputDataset, OutputDataset
from openlineage.client.facet_v2 import (
    column_lineage_dataset,
    data_quality_assertions_dataset,
    data_quality_metrics_input_dataset,
    output_statistics_output_dataset,
    schema_dataset,
)
from openlineage.client.naming.dataset import S3, Kafka, LocalFileSystem, Postgres


@dataclass(frozen=True)
class DatasetId:
    """An OpenLineage dataset identity: namespace + name."""

    namespace: str
    name: str

    def as_input(self, **facets) -> InputDataset:
        return InputDataset(namespace=self.namespace, name=self.name, facets=dict(facets))

    def as_output(self, **facets) -> OutputDataset:
        return OutputDataset(namespace=self.namespace, name=self.name, facets=dict(facets))


def _host_port(address: str, default_port: int) -> tuple[str, str]:
    parsed = urlparse(address if "://" in address else f"//{address}")
    return parsed.hostname or address, str(parsed.port or default_port)


def dataset_for_delta_path(path: str | Path) -> DatasetId:
    """A Delta table (or any file-based dataset) by location: local path or `s3://bucket/key`."""
    text = str(path).rstrip("/")
    if text.startswith(("s3://", "s3a://")):
        parsed = urlparse(text)
        naming = S3(bucket_name=parsed.netloc, object_key=parsed.path.lstrip("/"))
        return DatasetId("s3://" + parsed.netloc, naming.get_name())
    if text.startswith("file://"):
        text = urlparse(text).path
    naming = LocalFileSystem(path=str(Path(text).resolve()))
    return DatasetId(naming.get_namespace(), naming.get_name())


def dataset_for_s3_object(bucket: str, key: str) -> DatasetId:
    naming = S3(bucket_name=bucket, object_key=key.lstrip("/"))
    return DatasetId(naming.get_namespace(), naming.get_name())


def dataset_for_kafka_topic(bootstrap_servers: str, topic: str) -> DatasetId:
    """Named by the first bootstrap server, as the spec asks (`kafka://host:port`)."""
    host, port = _host_port(bootstrap_servers.split(",")[0].strip(), 9092)
    naming = Kafka(bootstrap_server_host=host, port=port, topic=topic)
    return DatasetId(naming.get_namespace(), naming.get_name())


def dataset_for_postgres_table(dsn: str, schema: str, table: str) -> DatasetId:
    """`postgresql://user@host:port/db` + schema + table → `postgres://host:port`, `db.schema.table`."""
    parsed = urlparse(dsn)
    naming = Postgres(
        host=parsed.hostname or "localhost",
        port=str(parsed.port or 5432),
        database=parsed.path.lstrip("/") or "postgres",
        schema=schema,
        table=table,
    )
    return DatasetId(naming.get_namespace(), naming.get_name())


def schema_facet(schema: pa.Schema) -> schema_dataset.SchemaDatasetFacet:
    """Columns with Arrow type names; struct fields nest as the facet allows."""

    def field_of(field: pa.Field, position: int | None) -> schema_dataset.SchemaDatasetFacetFields:
        children = []
        if pa.types.is_struct(field.type):
            children = [field_of(field.type.field(i), None) for i in range(field.type.num_fields)]
        return schema_dataset.SchemaDatasetFacetFields(
            name=field.name, type=str(field.type), ordinal_position=position, fields=children
        )

    return schema_dataset.SchemaDatasetFacet(fields=[field_of(f, i + 1) for i, f in enumerate(schema)])




def column_lineage_facet(
    sources: Mapping[str, Sequence[tuple[str, str, str]]],
    transformation: str | None = None,
) -> column_lineage_dataset.ColumnLineageDatasetFacet:
    """{output column: [(input namespace, input name, input column), ...]} → ColumnLineageDatasetFacet."""
    return column_lineage_dataset.ColumnLineageDatasetFacet(
        fields={
            column: column_lineage_dataset.Fields(
                inputFields=[
                    column_lineage_dataset.InputField(namespace=namespace, name=name, field=field)
                    for namespace, name, field in inputs
                ],
                transformationDescription=transformation,
            )
            for column, inputs in sources.items()
        }
    )


def output_statistics_facet(row_count: int | None, size_bytes: int | None = None, file_count: int | None = None):
    return output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
        rowCount=row_count, size=size_bytes, fileCount=file_count
    )


@dataclass(frozen=True)
class QualityAssertion:
    """One check result, in the terms OpenLineage's assertions facet uses."""

    assertion: str  # e.g. not_null, unique, range, pattern
    success: bool
    column: str | None = None
    severity: str | None = None  # error | warning | info
    name: str | None = None
    description: str | None = None
    actual: str | None = None


def data_quality_assertions_facet(assertions: Iterable[QualityAssertion]):
    return data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(
        assertions=[
            data_quality_assertions_dataset.Assertion(
                assertion=a.assertion,
                success=a.success,
                column=a.column,
                severity=a.severity,
                name=a.name,
                description=a.description,
                actual=a.actual,
            )
            for a in assertions
        ]
    )


def data_quality_metrics_facet(
    row_count: int | None,
    null_counts: Mapping[str, int] | None = None,
    distinct_counts: Mapping[str, int] | None = None,
    size_bytes: int | None = None,
):
    columns = set(null_counts or {}) | set(distinct_counts or {})
    return data_quality_metrics_input_dataset.DataQualityMetricsInputDatasetFacet(
        rowCount=row_count,
        bytes=size_bytes,
        columnMetrics={
            column: data_quality_metrics_input_dataset.ColumnMetrics(
                nullCount=(null_counts or {}).get(column), distinctCount=(distinct_counts or {}).get(column)
            )
            for column in sorted(columns)
        },
    )


def as_dataset(dataset: DatasetId | Dataset) -> DatasetId:
    return dataset if isinstance(dataset, DatasetId) else DatasetId(dataset.namespace, dataset.name)
