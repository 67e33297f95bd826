"""Running a table's Great Expectations suite (no Dagster here: the dbt plugin runs suites inside dbt)."""

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from pipelines.lake import delta_scan, delta_table_exists, storage_secret_sql
from pipelines.settings import Settings
from quality.results import SuiteOutcome, append_results, outcome_to_json, result_rows
from quality.rules import REJECTS_TABLE, Rule, Severity, rules_for_table
from quality.suite import READABLE

CHECK_NAME = "gx_suite"


# what REJECTS rules read before silver.rejects exists (a staging model built alone on a new lake)
_NO_REJECTS = "(SELECT NULL::VARCHAR AS model, NULL::TIMESTAMPTZ AS rejected_at WHERE false)"


def table_sql_for(settings: Settings) -> Callable[[str], str]:
    def table_sql(table: str) -> str:
        layer, name = table.split(".", 1)
        path = settings.layer_path(layer, name)
        if table == REJECTS_TABLE and not delta_table_exists(path, settings):
            return _NO_REJECTS
        return delta_scan(path)

    return table_sql


def run_suite(table: str, rules: Sequence[Rule], settings: Settings, *, now: datetime | None = None) -> SuiteOutcome:
    """Validate the Delta table of `table` ("<layer>.<table>") against `rules`, inside DuckDB."""
    from quality.gx_duckdb import lake_init_sql, validate_table
    from quality.results import outcomes_from_validation
    from quality.suite import compile_suite

    checked_at = now or datetime.now(UTC)
    table_sql = table_sql_for(settings)
    started = time.perf_counter()
    suite, origins = compile_suite(table, rules, table_sql=table_sql, now=checked_at)
    try:
        validation = validate_table(
            table_sql(table), suite, init_sql=lake_init_sql(storage_secret_sql(settings))
        )
    except Exception as exc:  # the table is missing or unreadable: that is the check's finding
        message = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return SuiteOutcome(table, [], None, time.perf_counter() - started, checked_at, error=message)
    outcomes, row_count = outcomes_from_validation(validation, origins)
    return SuiteOutcome(table, outcomes, row_count, time.perf_counter() - started, checked_at)


def run_suite_for_dbt(
    table: str, rules: Sequence[Rule], settings: Settings, *, run_id: str, outcome_dir: Path | None
) -> list[str]:
    """A dbt model's suite, run by its `gx_suite` dbt test right after dbt built the model, so that an
    ERROR failure stops everything downstream inside the one `dbt build` (dbt skips the children of a
    failed test). Stores the results and, for the Dagster op to report, the outcome in
    `outcome_dir/<table>.json`; returns the test's rows: the failures that block downstream."""
    outcome = run_suite(table, rules_for_table(rules, table), settings)
    append_results(settings, result_rows(outcome, run_id=run_id, check_name=CHECK_NAME))
    if outcome_dir is not None:
        outcome_dir.mkdir(parents=True, exist_ok=True)
        (outcome_dir / f"{table}.json").write_text(outcome_to_json(outcome))
    if outcome.error is not None:
        return [f"{READABLE}: {outcome.error}"]
    return [f"{o.rule.name} ({o.unexpected_count} unexpected)" for o in outcome.failed_rules if o.rule.severity is Severity.ERROR]
