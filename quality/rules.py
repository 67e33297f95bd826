"""Data-quality rules as declared in `quality/rules.yml`, validated into typed records.

The file keeps the seed's form (table, column, rule_type, config, severity, description) so the rules
read the same as the seed's `data_quality_rules` table; everything a user can get wrong is reported as
one `RulesError` line naming the file and the rule's index.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import yaml

RULES_FILE = Path(__file__).resolve().parent / "rules.yml"

_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$")


class RulesError(Exception):
    """A mistake in a rules file; the message names the file, the rule and what is wrong."""


class RuleType(enum.StrEnum):
    NOT_NULL = "NOT_NULL"
    RANGE = "RANGE"
    PATTERN = "PATTERN"
    REFERENCE = "REFERENCE"
    UNIQUE = "UNIQUE"
    FRESHNESS = "FRESHNESS"
    # the share of a staging model's latest run that silver.rejects holds (column: the run's timestamp)
    REJECTS = "REJECTS"


# where staging models leave the change events they cannot type (dbt_project/models/staging/rejects.sql)
REJECTS_TABLE = "silver.rejects"


class Severity(enum.StrEnum):
    ERROR = "ERROR"
    WARNING = "WARNING"
    INFO = "INFO"


# Which config keys each rule type requires / allows. RANGE needs at least one bound.
_REQUIRED_CONFIG: dict[RuleType, set[str]] = {
    RuleType.NOT_NULL: set(),
    RuleType.UNIQUE: set(),
    RuleType.RANGE: set(),
    RuleType.PATTERN: {"regex"},
    RuleType.REFERENCE: {"table", "column"},
    RuleType.FRESHNESS: {"max_age_hours"},
    RuleType.REJECTS: {"max_percent"},
}
_ALLOWED_CONFIG: dict[RuleType, set[str]] = {
    RuleType.NOT_NULL: set(),
    RuleType.UNIQUE: set(),
    RuleType.RANGE: {"min", "max"},
    RuleType.PATTERN: {"regex"},
    RuleType.REFERENCE: {"table", "column"},
    RuleType.FRESHNESS: {"max_age_hours"},
    RuleType.REJECTS: {"max_percent"},
}


@dataclass(frozen=True)
class Rule:
    table: str  # "<layer>.<table>", the asset key joined by a dot
    column: str | None  # None only for table-level rules (the built-in readability rule)
    rule_type: RuleType
    severity: Severity
    description: str = ""
    config: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)

    @property
    def name(self) -> str:
        """Stable, human-readable identifier of the rule within its table."""
        if self.rule_type is RuleType.REJECTS:  # a table has one per threshold (e.g. WARNING at 0, ERROR at 5)
            return f"rejects:{self.column}>{self.config['max_percent']}%"
        return f"{self.rule_type.value.lower()}:{self.column or '*'}"


def load_rules(path: Path | str = RULES_FILE) -> list[Rule]:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise RulesError(f"{path}: cannot read rules file ({exc.strerror})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = str(exc).replace("\n", " ")
        raise RulesError(f"{path}: not valid YAML ({problem})") from exc
    return parse_rules(data, source=str(path))


def parse_rules(data: Any, source: str = "<rules>") -> list[Rule]:
    if data is None:
        return []
    if isinstance(data, dict) and "rules" in data:
        data = data["rules"]
    if not isinstance(data, list):
        raise RulesError(f"{source}: expected a list of rules, got {type(data).__name__}")
    rules = [_parse_rule(item, f"{source}: rule {index}") for index, item in enumerate(data)]
    seen: dict[tuple[str, str], int] = {}
    for index, rule in enumerate(rules):
        key = (rule.table, rule.name)
        if key in seen:
            raise RulesError(
                f"{source}: rule {index}: duplicate of rule {seen[key]} ({rule.rule_type} on {rule.table}.{rule.column})"
            )
        seen[key] = index
    return rules


def rules_for_table(rules: list[Rule], table: str) -> list[Rule]:
    return [rule for rule in rules if rule.table == table]


def _parse_rule(item: Any, where: str) -> Rule:
    if not isinstance(item, dict):
        raise RulesError(f"{where}: expected a mapping, got {type(item).__name__}")
    unknown = set(item) - {"table", "column", "rule_type", "config", "severity", "description"}
    if unknown:
        raise RulesError(f"{where}: unknown key(s) {sorted(unknown)}")

    table = item.get("table")
    if not isinstance(table, str) or not _TABLE_NAME.match(table):
        raise RulesError(f"{where}: table must be '<layer>.<table>', got {table!r}")
    column = item.get("column")
    if not isinstance(column, str) or not column:
        raise RulesError(f"{where}: column is required (a non-empty string), got {column!r}")

    rule_type_text = item.get("rule_type")
    try:
        rule_type = RuleType(rule_type_text)
    except ValueError:
        raise RulesError(
            f"{where}: unknown rule_type {rule_type_text!r}; expected one of {[t.value for t in RuleType]}"
        ) from None
    severity_text = item.get("severity", Severity.ERROR.value)
    try:
        severity = Severity(severity_text)
    except ValueError:
        raise RulesError(
            f"{where}: bad severity {severity_text!r}; expected one of {[s.value for s in Severity]}"
        ) from None
    description = item.get("description") or ""
    if not isinstance(description, str):
        raise RulesError(f"{where}: description must be text, got {type(description).__name__}")

    config = item.get("config") or {}
    if not isinstance(config, dict):
        raise RulesError(f"{where}: config must be a mapping, got {type(config).__name__}")
    where = f"{where} ({rule_type.value} on {table}.{column})"
    missing = _REQUIRED_CONFIG[rule_type] - set(config)
    if missing:
        raise RulesError(f"{where}: missing config key(s) {sorted(missing)}")
    extra = set(config) - _ALLOWED_CONFIG[rule_type]
    if extra:
        raise RulesError(f"{where}: unexpected config key(s) {sorted(extra)}; allowed: {sorted(_ALLOWED_CONFIG[rule_type])}")
    _check_config(rule_type, config, where)
    return Rule(table=table, column=column, rule_type=rule_type, severity=severity, description=description, config=dict(config))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_config(rule_type: RuleType, config: dict[str, Any], where: str) -> None:
    if rule_type is RuleType.RANGE:
        if "min" not in config and "max" not in config:
            raise RulesError(f"{where}: missing config key: RANGE needs 'min', 'max' or both")
        for bound in ("min", "max"):
            if bound in config and not _is_number(config[bound]):
                raise RulesError(f"{where}: config {bound} must be a number, got {config[bound]!r}")
        if "min" in config and "max" in config and config["min"] > config["max"]:
            raise RulesError(f"{where}: config min {config['min']} is greater than max {config['max']}")
    elif rule_type is RuleType.PATTERN:
        regex = config["regex"]
        if not isinstance(regex, str):
            raise RulesError(f"{where}: config regex must be text, got {regex!r}")
        problem = regex_problem(regex)
        if problem:
            raise RulesError(f"{where}: bad regex {regex!r} ({problem})")
    elif rule_type is RuleType.REFERENCE:
        if not isinstance(config["table"], str) or not _TABLE_NAME.match(config["table"]):
            raise RulesError(f"{where}: config table must be '<layer>.<table>', got {config['table']!r}")
        if not isinstance(config["column"], str) or not config["column"]:
            raise RulesError(f"{where}: config column must be a non-empty string, got {config['column']!r}")
    elif rule_type is RuleType.REJECTS:
        share = config["max_percent"]
        if not _is_number(share) or not 0 <= share < 100:
            raise RulesError(f"{where}: config max_percent must be a number from 0 to below 100, got {share!r}")
    elif rule_type is RuleType.FRESHNESS:
        hours = config["max_age_hours"]
        if not _is_number(hours) or hours <= 0:
            raise RulesError(f"{where}: config max_age_hours must be a positive number, got {hours!r}")


_regex_checker: duckdb.DuckDBPyConnection | None = None


def regex_problem(regex: str) -> str | None:
    """Why DuckDB (RE2, which runs the PATTERN rules) rejects `regex`, or None if it compiles.

    Python's `re` accepts syntax RE2 refuses (look-arounds, backreferences), so we ask the engine that
    will run the rule rather than Python.
    """
    global _regex_checker
    if _regex_checker is None:
        _regex_checker = duckdb.connect(":memory:")
    try:
        _regex_checker.execute("SELECT regexp_matches('', ?)", [regex]).fetchall()
    except duckdb.Error as exc:
        return str(exc).splitlines()[0]
    return None
