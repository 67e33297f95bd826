"""Compiling rules into a Great Expectations suite (pure: no I/O, no connection).

NOT_NULL, UNIQUE and RANGE map to GX's built-in column expectations, which GX turns into SQL itself.
PATTERN, REFERENCE, FRESHNESS and REJECTS become `UnexpectedRowsExpectation`s with DuckDB SQL: GX has no regex
support for the duckdb dialect, no cross-table expectation, and no freshness expectation on SQL.

GX substitutes `{batch}` with `str.format`, so every brace we interpolate (a regex quantifier such as
`x{3}`, a path) is doubled.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import great_expectations as gx
import great_expectations.expectations as gxe
from great_expectations.expectations.metadata_types import FailureSeverity

from pipelines.lake import quote_identifier, quote_literal
from quality.rules import REJECTS_TABLE, Rule, RuleType, Severity

# The rule every suite carries, so an asset without declared rules is still checked: its Delta table
# exists and DuckDB can read it (row count >= 0 fails only when the scan itself fails).
READABLE = "READABLE"
RULE_KEY = "lakehouse_rule"

_GX_SEVERITY = {Severity.ERROR: FailureSeverity.CRITICAL, Severity.WARNING: FailureSeverity.WARNING, Severity.INFO: FailureSeverity.INFO}


@dataclass(frozen=True)
class SuiteRule:
    """One expectation of a compiled suite and what it came from."""

    name: str  # unique within the suite; stored in the expectation's meta
    rule_type: str  # a RuleType value, or READABLE
    column: str | None
    severity: Severity
    description: str


def _escape_braces(sql: str) -> str:
    return sql.replace("{", "{{").replace("}", "}}")


def compile_suite(
    table: str,
    rules: Sequence[Rule],
    *,
    table_sql: Callable[[str], str],
    now: datetime,
) -> tuple[gx.ExpectationSuite, dict[str, SuiteRule]]:
    """The suite for `table` ("<layer>.<table>") and, by expectation meta name, the rule behind each one.

    `table_sql` gives the SQL table expression of another table (for REFERENCE rules); `now` is the check
    time FRESHNESS measures against (passed in so the stored result and the SQL agree).
    """
    readable = SuiteRule(READABLE, READABLE, None, Severity.ERROR, "The Delta table exists and is readable.")
    expectations: list[gxe.Expectation] = [
        gxe.ExpectTableRowCountToBeBetween(
            min_value=0, meta={RULE_KEY: readable.name}, description=readable.description, catch_exceptions=True
        )
    ]
    origins: dict[str, SuiteRule] = {readable.name: readable}

    for rule in rules:
        if rule.table != table:
            raise ValueError(f"rule {rule.name} is for {rule.table}, not {table}")
        origin = SuiteRule(rule.name, rule.rule_type.value, rule.column, rule.severity, rule.description)
        expectation = _expectation_for(rule, table_sql=table_sql, now=now)
        expectation.meta = {RULE_KEY: origin.name}
        expectation.severity = _GX_SEVERITY[rule.severity]
        if rule.description:
            expectation.description = rule.description
        expectations.append(expectation)
        origins[origin.name] = origin
    # Passing the expectations to the constructor (rather than add_expectation) needs no active data
    # context, which keeps this function pure.
    return gx.ExpectationSuite(name=f"{table}.gx_suite", expectations=expectations), origins


def _expectation_for(rule: Rule, *, table_sql: Callable[[str], str], now: datetime) -> gxe.Expectation:
    column = rule.column
    assert column is not None
    col = _escape_braces(quote_identifier(column))
    match rule.rule_type:
        case RuleType.NOT_NULL:
            return gxe.ExpectColumnValuesToNotBeNull(column=column)
        case RuleType.UNIQUE:
            return gxe.ExpectColumnValuesToBeUnique(column=column)
        case RuleType.RANGE:
            return gxe.ExpectColumnValuesToBeBetween(
                column=column, min_value=rule.config.get("min"), max_value=rule.config.get("max")
            )
        case RuleType.PATTERN:
            regex = _escape_braces(quote_literal(rule.config["regex"]))
            query = (
                f"SELECT * FROM {{batch}} WHERE {col} IS NOT NULL "
                f"AND NOT regexp_matches(CAST({col} AS VARCHAR), {regex})"
            )
        case RuleType.REFERENCE:
            ref_col = _escape_braces(quote_identifier(rule.config["column"]))
            ref_table = _escape_braces(table_sql(rule.config["table"]))
            # NOT IN over a subquery without NULLs is an anti-join that needs no table aliases (GX
            # aliases `{batch}` itself unless the query contains a JOIN).
            query = (
                f"SELECT * FROM {{batch}} WHERE {col} IS NOT NULL "
                f"AND {col} NOT IN (SELECT {ref_col} FROM {ref_table} WHERE {ref_col} IS NOT NULL)"
            )
        case RuleType.FRESHNESS:
            cutoff = now.astimezone(UTC) - timedelta(hours=rule.config["max_age_hours"])
            # An empty table has no fresh data: latest IS NULL fails the rule.
            query = (
                f"SELECT latest FROM (SELECT max({col}) AS latest FROM {{batch}}) AS freshness "
                f"WHERE latest IS NULL OR latest < TIMESTAMPTZ '{cutoff.isoformat()}'"
            )
        case RuleType.REJECTS:
            # the latest run is the newest run timestamp in the model or in what it rejected (a run may
            # reject everything it read); fails when its rejects exceed max_percent of what it read
            rejects = _escape_braces(table_sql(REJECTS_TABLE))
            model = _escape_braces(quote_literal(rule.table.split(".", 1)[1]))
            query = (
                f"SELECT staged, rejected FROM (SELECT "
                f"(SELECT count(*) FROM {{batch}} WHERE {col} = latest) AS staged, "
                f"(SELECT count(*) FROM {rejects} WHERE model = {model} AND rejected_at = latest) AS rejected "
                f"FROM (SELECT greatest(coalesce((SELECT max({col}) FROM {{batch}}), '-infinity'::timestamptz), "
                f"coalesce((SELECT max(rejected_at) FROM {rejects} WHERE model = {model}), '-infinity'::timestamptz)) "
                f"AS latest) AS run) AS shares "
                f"WHERE rejected > 0 AND rejected * 100.0 > {float(rule.config['max_percent'])!r} * (staged + rejected)"
            )
        case _:
            raise ValueError(f"no expectation for rule type {rule.rule_type}")
    return gxe.UnexpectedRowsExpectation(unexpected_rows_query=query)
