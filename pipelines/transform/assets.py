"""dbt models as Dagster assets (dagster-dbt), keyed like the lake: [layer, model]."""

import json
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from lineage.dbt import DbtLineageTracker
from lineage.emitter import LineageEmitter, LineageResource
from pipelines.lake import delta_table_metadata, delta_table_stats, table_name_metadata
from pipelines.partitions import daily_partitions, dbt_vars_for
from pipelines.resources import LakehouseSettings
from pipelines.settings import PROJECT_DIR, Settings
from pipelines.transform.dbt_delta_plugin import QUALITY_OUTCOMES_DIR, QUALITY_RUN_ID_ENV, SCHEMA_DRIFT_DIR
from quality.checks import CHECK_NAME, check_result_for, emit_suite_lineage
from quality.results import outcome_from_json, results_path

DBT_PROJECT = DbtProject(project_dir=PROJECT_DIR / "dbt_project", profiles_dir=PROJECT_DIR / "dbt_project")
# the venv's dbt, whatever PATH says (dagster dev and schedules do not activate the venv)
DBT_EXECUTABLE = str(Path(sys.executable).parent / "dbt")
DBT_POOL = "dbt"
DRIFT_CHECK_NAME = "schema_drift"
REJECTS_MODEL = "model.lakehouse.rejects"


def prepare_dbt_manifest() -> None:
    """`dbt parse` when the manifest is missing (fresh clone) or under `dagster dev` (models may have
    changed). dagster-dbt's own preparer looks for `dbt` on PATH, which `dagster dev` started outside
    the venv does not have, so we call the venv's dbt ourselves."""
    if DBT_PROJECT.manifest_path.exists() and not DBT_PROJECT.preparer.using_dagster_dev():
        return
    dbt_resource().cli(["parse", "--quiet"], target_path=DBT_PROJECT.target_path).wait()


class LakehouseDbtTranslator(DagsterDbtTranslator):
    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        if unique_id != REJECTS_MODEL:
            return spec
        # silver.rejects reads every shop bronze table without source() (see macros/cdc.sql): the graph
        # still shows where its rows come from
        shop_sources = [s for s in manifest["sources"] if manifest["sources"][s]["source_name"] == "shop"]
        return spec.merge_attributes(deps=[self.get_asset_spec(manifest, s, project).key for s in shop_sources])

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        # models: [silver|gold, model]; sources: [bronze, table], the keys of the ingestion assets
        return dg.AssetKey([dbt_resource_props["schema"], dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return dbt_resource_props["schema"]

    def get_metadata(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, Any]:
        # dagster-dbt names the relation in dbt's DuckDB (`memory.silver.x`), which nobody can query
        table = dbt_resource_props.get("alias") or dbt_resource_props["name"]
        return {**super().get_metadata(dbt_resource_props), **table_name_metadata(dbt_resource_props["schema"], table)}

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> list[str]:
        return ["team:analytics-engineering"]

    def get_tags(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, str]:
        return {**super().get_tags(dbt_resource_props), "dagster/kind/delta": "", "dagster/kind/duckdb": ""}


# Source tests stay dbt's (`dbt build`/`dbt test` from the CLI run them): as checks owned by the dbt op they
# would exempt it from waiting for the bronze assets' blocking gx_suite checks.
TRANSLATOR = LakehouseDbtTranslator()


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(project_dir=DBT_PROJECT, dbt_executable=DBT_EXECUTABLE)


prepare_dbt_manifest()


def dbt_build_args(window: dg.TimeWindow | None) -> list[str]:
    """`dbt build`, with the run's day partitions as vars: a backfill of many days is one invocation."""
    build_vars = dbt_vars_for(window)
    return ["build", "--vars", json.dumps(build_vars)] if build_vars else ["build"]


@dbt_assets(
    manifest=DBT_PROJECT.manifest_path,
    project=DBT_PROJECT,
    dagster_dbt_translator=TRANSLATOR,
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    # one dbt build at a time (pipelines/instance/dagster.yaml): overlapping builds could move a model's
    # watermark past rows the other commits later
    pool=DBT_POOL,
)
def lakehouse_dbt_models(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, lakehouse: LakehouseSettings, lineage: LineageResource
):
    settings = lakehouse.load()
    storage = settings.delta_storage_options()
    partitioned = context.has_partition_key or context.has_partition_key_range
    # read by dbt, which starts now: the lake of the `lakehouse` resource, the run for the quality results;
    # and (by dagster-dbt) which tests a subset runs: dbt's default also runs a test of an unselected model
    # that merely refers to a selected one (a relationships test), which fails when that model is not built
    with _environment({"LAKEHOUSE_DATA_DIR": str(settings.data_dir), QUALITY_RUN_ID_ENV: context.run.run_id,
                       "LAKEHOUSE_LAKE_ROOT": settings.lake_root, "DBT_INDIRECT_SELECTION": "buildable",
                       **_absolute_config_path()}):
        invocation = dbt.cli(dbt_build_args(context.partition_time_window if partitioned else None), context=context)
    emitter = lineage.get_emitter()
    parent = (context.job_name, context.run.run_id)
    tracker = DbtLineageTracker(
        emitter,
        invocation.manifest,
        path_for=settings.layer_path,
        table_stats=lambda path: delta_table_stats(path, storage)[:2],
        parent=parent,
        target_path=invocation.target_path,
    )
    try:
        for raw in invocation.stream_raw_events():
            tracker.observe(raw.raw_event)
            if _is_source_test(raw.raw_event, invocation.manifest):
                continue  # not a Dagster check (see TRANSLATOR): dagster-dbt would warn about each one
            for event in raw.to_default_asset_events(
                manifest=invocation.manifest,
                dagster_dbt_translator=TRANSLATOR,
                context=context,
                target_path=invocation.target_path,
                project=DBT_PROJECT,
            ):
                if isinstance(event, dg.Output):
                    layer, table = context.asset_key_for_output(event.output_name).path
                    path = settings.layer_path(layer, table)
                    event = event.with_metadata({**event.metadata, **delta_table_metadata(path, storage)})
                elif isinstance(event, dg.AssetCheckResult) and event.check_name == CHECK_NAME:
                    event = _suite_result(event, invocation.target_path, settings, emitter, parent)
                elif isinstance(event, dg.AssetCheckResult) and event.check_name == DRIFT_CHECK_NAME:
                    event = _drift_result(event, invocation.target_path)
                yield event
    finally:
        tracker.close()
    invocation.wait()  # raises when dbt failed


@contextmanager
def _environment(variables: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _is_source_test(raw_event: Mapping[str, Any], manifest: Mapping[str, Any]) -> bool:
    unique_id = raw_event.get("data", {}).get("node_info", {}).get("unique_id", "")
    node = manifest["nodes"].get(unique_id) if unique_id.startswith("test.") else None
    parents = node.get("depends_on", {}).get("nodes", []) if node else []
    return bool(parents) and all(parent.startswith("source.") for parent in parents)


def _absolute_config_path() -> dict[str, str]:
    # dbt starts in dbt_project/, where a relative LAKEHOUSE_CONFIG would name another file
    config = os.environ.get("LAKEHOUSE_CONFIG")
    return {"LAKEHOUSE_CONFIG": str(Path(config).resolve())} if config else {}


def _suite_result(dbt_result: dg.AssetCheckResult, target_path: Path, settings: Settings, emitter: LineageEmitter,
                  parent: tuple[str, str]) -> dg.AssetCheckResult:
    """The gx_suite dbt test's result with what the suite found (rules, severities, counts), which the
    suite left beside the invocation's run results, also sent as lineage; dbt's own result if the suite
    never got to run."""
    table = ".".join(dbt_result.asset_key.path)
    outcome_file = target_path / QUALITY_OUTCOMES_DIR / f"{table}.json"
    if not outcome_file.exists():
        return dbt_result
    outcome = outcome_from_json(outcome_file.read_text())
    emit_suite_lineage(emitter, outcome, settings, parent)
    suite = check_result_for(outcome, results_table=results_path(settings))
    return dg.AssetCheckResult(
        asset_key=dbt_result.asset_key,
        check_name=CHECK_NAME,
        passed=suite.passed,
        severity=suite.severity,
        metadata={**dbt_result.metadata, **suite.metadata},
        description=suite.description,
    )


def _drift_result(dbt_result: dg.AssetCheckResult, target_path: Path) -> dg.AssetCheckResult:
    """The schema_drift test's result with the drift it found, one line per column, which the dbt plugin
    left beside the invocation's run results."""
    table = dbt_result.asset_key.path[-1].removeprefix("stg_shop__")
    drift_file = target_path / SCHEMA_DRIFT_DIR / f"{table}.json"
    messages = json.loads(drift_file.read_text()) if drift_file.exists() else []
    if not messages:
        return dbt_result
    return dg.AssetCheckResult(
        asset_key=dbt_result.asset_key,
        check_name=DRIFT_CHECK_NAME,
        passed=dbt_result.passed,
        severity=dbt_result.severity,
        metadata={**dbt_result.metadata, "schema_drift": dg.MetadataValue.md("\n".join(f"- {m}" for m in messages))},
        description="; ".join(messages),
    )


dbt_model_assets = [lakehouse_dbt_models]
