"""Dagster asset checks: one blocking `gx_suite` check per asset, built from `quality/rules.yml`, and the
Dagster result of a suite's outcome (also used for the dbt models' `gx_suite` dbt tests). Checks read the
lake the `lakehouse` resource points at, the one its assets wrote.
"""


from collections.abc import Sequence
from pathlib import Path

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetKey,
    MetadataValue,
    TableColumn,
    TableRecord,
    TableSchema,
    asset_check,
)

from lineage.emitter import LineageEmitter, LineageResource
from lineage.facets import dataset_for_delta_path
from pipelines.resources import LakehouseSettings
from pipelines.settings import Settings
from quality.results import SuiteOutcome, append_results, lineage_assertions, result_rows, results_path
from quality.rules import RULES_FILE, Rule, Severity, load_rules, rules_for_table
from quality.run import CHECK_NAME, run_suite

# No `from __future__ import annotations` here: Dagster inspects the check function's `context`
# annotation at definition time and rejects it as a string.


def table_name_for(key: AssetKey) -> str:
    """`["silver", "stg_shop__orders"]` → `"silver.stg_shop__orders"`, the name rules use."""
    if len(key.path) != 2:
        raise ValueError(f"asset key {key.to_user_string()} is not [<layer>, <table>]")
    return ".".join(key.path)


def check_result_for(outcome: SuiteOutcome, *, results_table: str) -> AssetCheckResult:
    rules_table = MetadataValue.table(
        records=[
            TableRecord(
                {
                    "rule": o.rule.name,
                    "expectation": o.expectation,
                    "column": o.rule.column,
                    "severity": o.rule.severity.value,
                    "passed": o.passed,
                    "unexpected_count": o.unexpected_count,
                    "observed_value": None if o.observed_value is None else str(o.observed_value),
                    "error": o.details.get("error"),
                }
            )
            for o in outcome.rules
        ],
        schema=TableSchema(
            columns=[
                TableColumn("rule", "string"),
                TableColumn("expectation", "string"),
                TableColumn("column", "string"),
                TableColumn("severity", "string"),
                TableColumn("passed", "bool"),
                TableColumn("unexpected_count", "int"),
                TableColumn("observed_value", "string"),
                TableColumn("error", "string"),
            ]
        ),
    )
    failed = outcome.failed_rules
    metadata: dict[str, object] = {
        "rules": rules_table,
        "row_count": outcome.row_count,
        "duration_seconds": round(outcome.duration_seconds, 3),
        "failed_rules": [o.rule.name for o in failed],
        "results_table": results_table,
    }
    if outcome.error is not None:
        metadata["error"] = outcome.error
        description = f"could not validate {outcome.table}: {outcome.error}"
    elif failed:
        description = "failed: " + ", ".join(
            f"{o.rule.name} ({o.rule.severity.value}, {o.unexpected_count} unexpected)" for o in failed
        )
    else:
        description = f"{len(outcome.rules)} rules passed"
    return AssetCheckResult(
        passed=outcome.passed,
        # WARN only for a failure that blocks nothing; a passing suite reports Dagster's default
        severity=AssetCheckSeverity.WARN if outcome.failed_rules and not outcome.blocks_downstream else AssetCheckSeverity.ERROR,
        metadata={k: v for k, v in metadata.items() if v is not None},
        description=description,
    )


def emit_suite_lineage(emitter: LineageEmitter, outcome: SuiteOutcome, settings: Settings,
                       parent: tuple[str, str]) -> None:
    """The suite run as an OpenLineage run `<table>.gx_suite` reading the table, with the rules' outcomes
    as its dataQualityAssertions (and the row count as dataQualityMetrics): OpenLineage defines them as
    facets of an input, the dataset the assertions were made on."""
    layer, name = outcome.table.split(".", 1)
    dataset = dataset_for_delta_path(settings.layer_path(layer, name))
    with emitter.run(f"{outcome.table}.{CHECK_NAME}", inputs=[dataset], parent=parent) as run:
        run.add_quality(dataset, lineage_assertions(outcome), row_count=outcome.row_count)


def build_quality_checks(asset_keys: Sequence[AssetKey], *, rules_file: Path | str = RULES_FILE) -> list[AssetChecksDefinition]:
    """One blocking `gx_suite` check per asset key ([<layer>, <table>]).

    Rules are loaded now, so a broken rules file fails the code location's load with a `RulesError`.
    An ERROR-severity failure returns severity ERROR, which (with `blocking=True`) stops downstream
    assets in the same run; WARNING and INFO failures return WARN and block nothing.
    """
    rules = load_rules(rules_file)
    return [_check_for(AssetKey.from_coercible(key), rules, Path(rules_file).name) for key in asset_keys]


def _check_for(
    key: AssetKey, all_rules: list[Rule], rules_file_name: str
) -> AssetChecksDefinition:
    table = table_name_for(key)
    rules = rules_for_table(all_rules, table)
    errors = sum(rule.severity is Severity.ERROR for rule in rules)
    description = (
        f"Great Expectations suite from quality/rules.yml: {len(rules)} rule(s) ({errors} ERROR) "
        "plus table-readable; runs in DuckDB over the Delta table; ERROR failures block downstream assets."
    )

    @asset_check(
        asset=key,
        name=CHECK_NAME,
        blocking=True,
        description=description,
        metadata={"rule_count": len(rules), "rules_file": rules_file_name},
    )
    def _gx_suite(
        context: AssetCheckExecutionContext, lakehouse: LakehouseSettings, lineage: LineageResource
    ) -> AssetCheckResult:
        settings = lakehouse.load()
        outcome = run_suite(table, rules, settings)
        append_results(settings, result_rows(outcome, run_id=context.run.run_id, check_name=CHECK_NAME))
        emit_suite_lineage(lineage.get_emitter(), outcome, settings, parent=(context.run.job_name, context.run.run_id))
        if not outcome.passed:
            context.log.warning(f"{table}: quality check failed: {[o.rule.name for o in outcome.failed_rules] or outcome.error}")
        return check_result_for(outcome, results_table=results_path(settings))

    return _gx_suite
