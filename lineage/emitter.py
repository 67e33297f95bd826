"""Emitting OpenLineage START and COMPLETE/FAIL events around a unit of work (an asset, a dbt model).

    emitter = LineageEmitter()
    with emitter.run("silver.stg_shop__orders", inputs=[bronze], outputs=[silver]) as run:
        table = build()
        run.set_output_stats(silver, row_count=table.num_rows, schema=table.schema)

START is sent on enter, COMPLETE on normal exit with the facets the body added, FAIL with an
`errorMessage` run facet when the body raises (the exception propagates). A lineage backend that is down
must never fail a data run: emission errors are logged, not raised.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from dagster import ConfigurableResource
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import error_message_run, parent_run, set_producer
from openlineage.client.uuid import generate_new_uuid

from lineage.client import build_client, lineage_namespace
from lineage.facets import (
    DatasetId,
    QualityAssertion,
    column_lineage_facet,
    data_quality_assertions_facet,
    data_quality_metrics_facet,
    output_statistics_facet,
    schema_facet,
)

log = logging.getLogger(__name__)

# A URI naming this code; replace with the repository URL once the project has a public home.
PRODUCER = "urn:lakehouse:lineage"
# facets name their producer too (`_producer`): the same one, not the OpenLineage client library
set_producer(PRODUCER)


class LineageRun:
    """The handle the body of `LineageEmitter.run` uses to attach facets to the COMPLETE event."""

    def __init__(self, run_id: str, inputs: Sequence[DatasetId], outputs: Sequence[DatasetId]) -> None:
        self.run_id = run_id
        self._inputs = list(inputs)
        self._outputs = list(outputs)
        self._dataset_facets: dict[DatasetId, dict[str, Any]] = {}
        self._input_facets: dict[DatasetId, dict[str, Any]] = {}
        self._output_facets: dict[DatasetId, dict[str, Any]] = {}

    def _require(self, dataset: DatasetId, among: list[DatasetId], what: str) -> None:
        if dataset not in among:
            raise ValueError(f"{dataset.namespace}/{dataset.name} is not one of this run's {what}")

    def set_schema(self, dataset: DatasetId, schema: pa.Schema) -> None:
        self._dataset_facets.setdefault(dataset, {})["schema"] = schema_facet(schema)

    def set_output_stats(
        self,
        dataset: DatasetId,
        row_count: int | None,
        schema: pa.Schema | None = None,
        size_bytes: int | None = None,
        file_count: int | None = None,
    ) -> None:
        self._require(dataset, self._outputs, "outputs")
        self._output_facets.setdefault(dataset, {})["outputStatistics"] = output_statistics_facet(
            row_count, size_bytes, file_count
        )
        if schema is not None:
            self.set_schema(dataset, schema)

    def set_column_lineage(
        self, dataset: DatasetId, sources: Mapping[str, Sequence[tuple[str, str, str]]], transformation: str | None = None
    ) -> None:
        """`sources`: {output column: [(input namespace, input name, input column), ...]}."""
        self._require(dataset, self._outputs, "outputs")
        self._dataset_facets.setdefault(dataset, {})["columnLineage"] = column_lineage_facet(sources, transformation)

    def add_quality(
        self,
        dataset: DatasetId,
        assertions: Iterable[QualityAssertion],
        row_count: int | None = None,
        null_counts: Mapping[str, int] | None = None,
    ) -> None:
        """Quality results for `dataset`. OpenLineage defines these as input-dataset facets (assertions
        made when reading a dataset): on an input they go to `inputFacets`; on an output of this run they
        are attached as dataset facets, since listing our own output as an input would draw a cycle."""
        facets = {"dataQualityAssertions": data_quality_assertions_facet(assertions)}
        if row_count is not None or null_counts:
            facets["dataQualityMetrics"] = data_quality_metrics_facet(row_count, null_counts)
        if dataset in self._inputs:
            self._input_facets.setdefault(dataset, {}).update(facets)
        else:
            self._require(dataset, self._outputs, "inputs or outputs")
            self._dataset_facets.setdefault(dataset, {}).update(facets)

    def inputs(self) -> list[InputDataset]:
        return [
            InputDataset(
                namespace=d.namespace,
                name=d.name,
                facets=dict(self._dataset_facets.get(d, {})),
                inputFacets=dict(self._input_facets.get(d, {})),
            )
            for d in self._inputs
        ]

    def outputs(self) -> list[OutputDataset]:
        return [
            OutputDataset(
                namespace=d.namespace,
                name=d.name,
                facets=dict(self._dataset_facets.get(d, {})),
                outputFacets=dict(self._output_facets.get(d, {})),
            )
            for d in self._outputs
        ]


class LineageEmitter:
    def __init__(self, client: OpenLineageClient | None = None, namespace: str | None = None) -> None:
        self.client = client or build_client()
        self.namespace = namespace or lineage_namespace()

    def emit(self, event: RunEvent) -> None:
        try:
            self.client.emit(event)
        except Exception:  # lineage is observability: never let it fail the data run
            log.warning("could not emit OpenLineage %s event for %s", event.eventType, event.job.name, exc_info=True)

    @contextmanager
    def run(
        self,
        job_name: str,
        inputs: Sequence[DatasetId] = (),
        outputs: Sequence[DatasetId] = (),
        run_id: str | None = None,
        *,
        parent: tuple[str, str] | None = None,
    ) -> Iterator[LineageRun]:
        """START now; COMPLETE or FAIL when the block ends. `parent` = (job name, run id) of the run that
        spawned this one (e.g. the Dagster run of an asset), sent as the parent run facet."""
        handle = LineageRun(run_id or str(generate_new_uuid()), inputs, outputs)
        job = Job(namespace=self.namespace, name=job_name)
        run_facets: dict[str, Any] = {}
        if parent is not None:
            run_facets["parent"] = parent_run.ParentRunFacet(
                run=parent_run.Run(runId=parent[1]), job=parent_run.Job(namespace=self.namespace, name=parent[0])
            )

        def event(state: RunState, extra_run_facets: Mapping[str, Any] | None = None, with_facets: bool = False) -> RunEvent:
            return RunEvent(
                eventType=state,
                eventTime=datetime.now(UTC).isoformat(),
                run=Run(runId=handle.run_id, facets={**run_facets, **(extra_run_facets or {})}),
                job=job,
                inputs=handle.inputs() if with_facets else [InputDataset(namespace=d.namespace, name=d.name) for d in inputs],
                outputs=handle.outputs() if with_facets else [OutputDataset(namespace=d.namespace, name=d.name) for d in outputs],
                producer=PRODUCER,
            )

        self.emit(event(RunState.START))
        try:
            yield handle
        except BaseException as exc:
            error = error_message_run.ErrorMessageRunFacet(
                message=f"{type(exc).__name__}: {exc}",
                programmingLanguage="python",
                stackTrace="".join(traceback.format_exception(exc)),
            )
            self.emit(event(RunState.FAIL, {"errorMessage": error}, with_facets=True))
            raise
        self.emit(event(RunState.COMPLETE, with_facets=True))


class LineageResource(ConfigurableResource):
    """The emitter as a Dagster resource: `def my_asset(lineage: LineageResource): with lineage.run(...)`.

    Empty fields mean "as configured by env / openlineage.yml / settings" (see lineage.client).
    """

    namespace: str = ""
    lineage_file: str = ""  # force the file transport at this path (tests, local runs)

    def get_emitter(self) -> LineageEmitter:
        if self.lineage_file:
            from pathlib import Path

            from openlineage.client.transport.file import FileConfig, FileTransport

            Path(self.lineage_file).parent.mkdir(parents=True, exist_ok=True)
            client = OpenLineageClient(transport=FileTransport(FileConfig(log_file_path=self.lineage_file, append=True)))
        else:
            client = build_client()
        return LineageEmitter(client, self.namespace or None)

    @contextmanager
    def run(
        self,
        job_name: str,
        inputs: Sequence[DatasetId] = (),
        outputs: Sequence[DatasetId] = (),
        run_id: str | None = None,
        *,
        parent: tuple[str, str] | None = None,
    ) -> Iterator[LineageRun]:
        with self.get_emitter().run(job_name, inputs, outputs, run_id, parent=parent) as handle:
            yield handle
