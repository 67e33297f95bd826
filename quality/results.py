"""Outcomes of a suite run, as typed records and as rows of the `<lake_root>/quality/results` Delta table.

The table's columns follow the seed's `data_quality_results`: one row per rule per check execution.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa
from deltalake import write_deltalake

from pipelines.settings import Settings
from pipelines.shared_tables import commit_retrying_conflicts, open_or_create
from quality.rules import Severity
from quality.suite import RULE_KEY, SuiteRule

RESULTS_SCHEMA = pa.schema(
    [
        pa.field("result_id", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("check_name", pa.string(), nullable=False),
        pa.field("table_name", pa.string(), nullable=False),
        pa.field("column_name", pa.string()),
        pa.field("rule_type", pa.string(), nullable=False),
        pa.field("severity", pa.string(), nullable=False),
        pa.field("passed", pa.bool_(), nullable=False),
        pa.field("unexpected_count", pa.int64()),
        pa.field("row_count", pa.int64()),
        pa.field("details", pa.string()),  # JSON text: rule, expectation, observed value, samples, error
        pa.field("checked_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)


@dataclass(frozen=True)
class RuleOutcome:
    rule: SuiteRule
    expectation: str  # GX expectation type, e.g. expect_column_values_to_not_be_null
    passed: bool
    unexpected_count: int | None
    observed_value: Any
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SuiteOutcome:
    table: str  # "<layer>.<table>"
    rules: list[RuleOutcome]
    row_count: int | None
    duration_seconds: float
    checked_at: datetime
    error: str | None = None  # set when the suite could not run at all (table missing, unreadable)

    @property
    def passed(self) -> bool:
        return self.error is None and all(outcome.passed for outcome in self.rules)

    @property
    def failed_rules(self) -> list[RuleOutcome]:
        return [outcome for outcome in self.rules if not outcome.passed]

    @property
    def blocks_downstream(self) -> bool:
        """An ERROR rule failed (or the suite could not run): downstream assets must not build on this."""
        return self.error is not None or any(o.rule.severity is Severity.ERROR for o in self.failed_rules)


def outcome_to_json(outcome: SuiteOutcome) -> str:
    """For the hand-over from the dbt process, where a model's suite runs, to the Dagster op that reports it."""
    return json.dumps(dataclasses.asdict(outcome), default=str)


def outcome_from_json(text: str) -> SuiteOutcome:
    data = json.loads(text)
    rules = [
        RuleOutcome(**(o | {"rule": SuiteRule(**(o["rule"] | {"severity": Severity(o["rule"]["severity"])}))}))
        for o in data["rules"]
    ]
    return SuiteOutcome(**(data | {"rules": rules, "checked_at": datetime.fromisoformat(data["checked_at"])}))


def outcomes_from_validation(result: Any, origins: dict[str, SuiteRule]) -> tuple[list[RuleOutcome], int | None]:
    """Per-rule outcomes (in suite order) and the row count from a GX ExpectationSuiteValidationResult."""
    by_rule: dict[str, RuleOutcome] = {}
    row_count: int | None = None
    for expectation_result in result.results:
        config = expectation_result.expectation_config
        rule = origins[config.meta[RULE_KEY]]
        payload = dict(expectation_result.result or {})
        exception = expectation_result.exception_info or {}
        details: dict[str, Any] = {"rule": rule.name, "expectation": config.type, "description": rule.description}
        for key in ("observed_value", "unexpected_percent", "missing_count", "partial_unexpected_list"):
            if key in payload:
                details[key] = payload[key]
        error = _exception_message(exception)
        if error:
            details["error"] = error
        unexpected = payload.get("unexpected_count")
        if unexpected is None and config.type == "unexpected_rows_expectation" and "observed_value" in payload:
            unexpected = payload["observed_value"]
        if config.type == "expect_table_row_count_to_be_between" and isinstance(payload.get("observed_value"), int):
            row_count = payload["observed_value"]
        elif row_count is None and isinstance(payload.get("element_count"), int):
            row_count = payload["element_count"]
        by_rule[rule.name] = RuleOutcome(
            rule=rule,
            expectation=config.type,
            passed=bool(expectation_result.success),
            unexpected_count=None if unexpected is None else int(unexpected),
            observed_value=payload.get("observed_value"),
            details=details,
        )
    return [by_rule[name] for name in origins if name in by_rule], row_count


def _exception_message(exception_info: dict[str, Any]) -> str | None:
    """First line of the error GX captured; it nests metric errors one level down, keyed by metric id."""
    candidates = [exception_info, *[v for v in exception_info.values() if isinstance(v, dict)]]
    for candidate in candidates:
        if candidate.get("raised_exception") and candidate.get("exception_message"):
            return str(candidate["exception_message"]).strip().splitlines()[0]
    return None


def results_path(settings: Settings) -> str:
    return f"{settings.lake_root}/quality/results"


def result_rows(outcome: SuiteOutcome, *, run_id: str, check_name: str) -> pa.Table:
    def row(rule: SuiteRule, passed: bool, unexpected: int | None, details: dict[str, Any]) -> dict[str, Any]:
        return {
            "result_id": str(uuid.uuid4()),
            "run_id": run_id,
            "check_name": check_name,
            "table_name": outcome.table,
            "column_name": rule.column,
            "rule_type": rule.rule_type,
            "severity": rule.severity.value,
            "passed": passed,
            "unexpected_count": unexpected,
            "row_count": outcome.row_count,
            "details": json.dumps(details, default=str, sort_keys=True),
            "checked_at": outcome.checked_at,
        }

    rows = [row(o.rule, o.passed, o.unexpected_count, o.details) for o in outcome.rules]
    if outcome.error is not None and not rows:
        from quality.suite import READABLE

        readable = SuiteRule(READABLE, READABLE, None, Severity.ERROR, "The Delta table exists and is readable.")
        rows.append(row(readable, False, None, {"rule": READABLE, "error": outcome.error}))
    return pa.Table.from_pylist(rows, schema=RESULTS_SCHEMA)


def append_results(settings: Settings, rows: pa.Table) -> None:
    # Concurrent checks (multiprocess executor, dbt threads) append to the same table. delta-rs rebases
    # concurrent appends, but not an append past a concurrent creation of the table (pipelines/shared_tables.py)
    storage = settings.delta_storage_options() or None
    open_or_create(results_path(settings), RESULTS_SCHEMA, storage)
    commit_retrying_conflicts(
        lambda: write_deltalake(results_path(settings), rows, mode="append", storage_options=storage)
    )


def lineage_assertions(outcome: SuiteOutcome) -> list:
    """The outcome as OpenLineage assertions, for `LineageRun.add_quality(dataset, ..., row_count=...)`."""
    from lineage.facets import QualityAssertion

    return [
        QualityAssertion(
            assertion=o.rule.rule_type.lower(),
            success=o.passed,
            column=o.rule.column,
            severity=o.rule.severity.value.lower(),
            name=o.rule.name,
            description=o.rule.description or None,
            actual=None if o.unexpected_count is None else f"{o.unexpected_count} unexpected",
        )
        for o in outcome.rules
    ]
