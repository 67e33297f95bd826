"""Rules file loading (one-line RulesError for every user mistake) and the rule → GX suite compiler."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from quality.rules import RULES_FILE, RuleType, RulesError, Severity, load_rules, parse_rules, rules_for_table

GOOD = {"table": "silver.orders", "column": "order_id", "rule_type": "NOT_NULL", "severity": "ERROR"}


def _error(rules: list) -> str:
    with pytest.raises(RulesError) as info:
        parse_rules(rules, source="rules.yml")
    message = str(info.value)
    assert "\n" not in message
    return message


def test_project_rules_file_declares_the_required_rules() -> None:
    rules = load_rules(RULES_FILE)
    declared = {(r.table, r.column, r.rule_type, r.severity) for r in rules}
    E, W = Severity.ERROR, Severity.WARNING
    for expected in [
        ("bronze.cdc_orders", "bronze_id", RuleType.NOT_NULL, E),
        ("bronze.cdc_orders", "bronze_id", RuleType.UNIQUE, E),
        ("bronze.cdc_orders", "offset", RuleType.NOT_NULL, E),
        ("bronze.cdc_orders", "op", RuleType.PATTERN, E),
        ("silver.stg_shop__orders", "source_bronze_id", RuleType.UNIQUE, E),
        ("silver.int_orders_current", "order_id", RuleType.UNIQUE, E),
        ("silver.stg_shop__orders", "total_amount", RuleType.RANGE, E),
        ("silver.stg_shop__orders", "status", RuleType.PATTERN, E),
        ("gold.agg_daily_sales", "order_date", RuleType.UNIQUE, E),
        ("gold.agg_daily_sales", "total_revenue", RuleType.RANGE, E),
        ("gold.agg_daily_sales", "avg_order_value", RuleType.RANGE, W),
    ]:
        assert expected in declared
    op = next(r for r in rules if r.table == "bronze.cdc_orders" and r.column == "op")
    assert op.config == {"regex": "^[crudtm]$"}


def test_rules_for_table_selects_by_layer_dot_table() -> None:
    rules = parse_rules([GOOD, {**GOOD, "table": "gold.orders"}])
    assert [r.table for r in rules_for_table(rules, "gold.orders")] == ["gold.orders"]


def test_unknown_rule_type_names_file_and_index() -> None:
    message = _error([GOOD, {**GOOD, "rule_type": "NOT_EMPTY"}])
    assert message.startswith("rules.yml: rule 1")
    assert "unknown rule_type 'NOT_EMPTY'" in message


def test_missing_config_key() -> None:
    message = _error([{**GOOD, "rule_type": "REFERENCE", "config": {"table": "silver.customers"}}])
    assert "rule 0" in message and "missing config key(s) ['column']" in message
    assert "missing config key" in _error([{**GOOD, "rule_type": "RANGE", "config": {}}])
    assert "missing config key(s) ['max_age_hours']" in _error([{**GOOD, "rule_type": "FRESHNESS"}])


def test_bad_severity() -> None:
    assert "bad severity 'FATAL'" in _error([{**GOOD, "severity": "FATAL"}])


def test_bad_regex_is_judged_by_duckdb_re2() -> None:
    assert "bad regex '(a'" in _error([{**GOOD, "rule_type": "PATTERN", "config": {"regex": "(a"}}])
    # Python's re accepts look-aheads; RE2, which runs the rule in DuckDB, does not.
    assert "bad regex" in _error([{**GOOD, "rule_type": "PATTERN", "config": {"regex": "^(?=a)"}}])


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"table": "orders"}, "table must be '<layer>.<table>'"),
        ({"column": None}, "column is required"),
        ({"rule_type": "RANGE", "config": {"min": "zero"}}, "config min must be a number"),
        ({"rule_type": "RANGE", "config": {"min": 5, "max": 1}}, "greater than max"),
        ({"rule_type": "NOT_NULL", "config": {"min": 1}}, "unexpected config key(s) ['min']"),
        ({"rule_type": "FRESHNESS", "config": {"max_age_hours": 0}}, "must be a positive number"),
        ({"colum": "x"}, "unknown key(s) ['colum']"),
    ],
)
def test_other_mistakes_are_one_line_errors(change: dict, fragment: str) -> None:
    assert fragment in _error([{**GOOD, **change}])


def test_duplicate_rule_is_rejected() -> None:
    assert "rule 1: duplicate of rule 0" in _error([GOOD, GOOD])


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    broken = tmp_path / "rules.yml"
    broken.write_text("- table: [unclosed\n")
    with pytest.raises(RulesError, match=r"rules.yml: not valid YAML"):
        load_rules(broken)
    with pytest.raises(RulesError, match="cannot read rules file"):
        load_rules(tmp_path / "absent.yml")


def test_compiler_maps_each_rule_type_to_its_expectation() -> None:
    from quality.suite import READABLE, compile_suite

    rules = parse_rules(
        [
            {"table": "silver.orders", "column": "order_id", "rule_type": "NOT_NULL", "severity": "ERROR"},
            {"table": "silver.orders", "column": "order_id", "rule_type": "UNIQUE", "severity": "ERROR"},
            {"table": "silver.orders", "column": "total", "rule_type": "RANGE", "config": {"min": 0, "max": 10}, "severity": "WARNING"},
            {"table": "silver.orders", "column": "code", "rule_type": "PATTERN", "config": {"regex": "^x{3}'$"}, "severity": "INFO"},
            {"table": "silver.orders", "column": "customer_id", "rule_type": "REFERENCE",
             "config": {"table": "silver.customers", "column": "id"}, "severity": "ERROR"},
            {"table": "silver.orders", "column": "updated_at", "rule_type": "FRESHNESS", "config": {"max_age_hours": 2}, "severity": "ERROR"},
        ]
    )
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    suite, origins = compile_suite("silver.orders", rules, table_sql=lambda t: f"<{t}>", now=now)
    by_rule = {e.meta["lakehouse_rule"]: e for e in suite.expectations}
    assert list(origins) == [READABLE, "not_null:order_id", "unique:order_id", "range:total", "pattern:code",
                             "reference:customer_id", "freshness:updated_at"]
    assert by_rule[READABLE].expectation_type == "expect_table_row_count_to_be_between"
    assert by_rule["not_null:order_id"].expectation_type == "expect_column_values_to_not_be_null"
    assert by_rule["unique:order_id"].expectation_type == "expect_column_values_to_be_unique"
    rng = by_rule["range:total"]
    assert (rng.expectation_type, rng.min_value, rng.max_value, rng.severity.value) == (
        "expect_column_values_to_be_between", 0, 10, "warning")
    pattern = by_rule["pattern:code"].unexpected_rows_query
    # braces doubled for GX's str.format; quotes doubled for SQL
    assert pattern.format(batch="B") == (
        "SELECT * FROM B WHERE \"code\" IS NOT NULL AND NOT regexp_matches(CAST(\"code\" AS VARCHAR), '^x{3}''$')")
    reference = by_rule["reference:customer_id"].unexpected_rows_query.format(batch="B")
    assert "NOT IN (SELECT \"id\" FROM <silver.customers>" in reference
    freshness = by_rule["freshness:updated_at"].unexpected_rows_query.format(batch="B")
    assert "TIMESTAMPTZ '2026-11-26T10:00:00+00:00'" in freshness
