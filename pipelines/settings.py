"""One typed settings object for the whole pipeline.

Precedence, lowest first: built-in defaults, `lakehouse.yaml` in the project directory, the local
stack's state file (ports chosen by `lakehouse stack up`), then `LAKEHOUSE_*` environment variables.
Production points the env variables at its own Kafka, S3 and lake root; locally nothing needs setting.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields, replace
from datetime import date
from pathlib import Path

import yaml

PROJECT_DIR = Path(__file__).resolve().parent.parent


class SettingsError(Exception):
    """A configuration mistake the user can fix; the message says what and where."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    lake_root: str
    kafka_bootstrap: str
    topic_prefix: str
    postgres_dsn: str
    s3_endpoint_url: str
    s3_bucket: str
    s3_access_key_id: str
    s3_secret_access_key: str
    s3_region: str
    events_prefix: str
    lineage_file: Path
    dbt_project_dir: Path
    # true when the connector applies ExtractNewRecordState (values are bare rows, not change events)
    cdc_flattened_records: bool
    # worker processes that decode CDC records (pipelines/cdc/decode_workers.py), shared by the topics
    # of one ingest process
    cdc_decode_workers: int
    # files a table no longer references are deleted this long after their removal (pipelines/maintenance.py);
    # keep it longer than any run or query: a vacuum also deletes files a writer has not committed yet
    vacuum_retention_hours: int
    # the first UTC day of the daily partitions: event day prefixes before it are not ingested (runs without
    # a partition and the sensor name them), and the UI shows days from it on
    partitions_start_date: str
    # `lakehouse status` (pipelines/status.py) calls an asset stale when its last materialization is older
    # than this (the hourly schedule plus a missed tick), and a topic lagging when bronze is this many
    # records behind it
    status_stale_after_hours: int
    status_max_kafka_lag: int
    # DuckDB's memory in dbt runs (GiB): beyond it, joins, sorts and windows spill to disk instead of
    # growing the process
    transform_memory_gb: int

    @property
    def stack_dir(self) -> Path:
        return self.data_dir / "stack"

    @property
    def stack_state_file(self) -> Path:
        return self.stack_dir / "state.json"

    def bronze_path(self, table: str) -> str:
        return f"{self.lake_root}/bronze/{table}"

    def layer_path(self, layer: str, table: str) -> str:
        return f"{self.lake_root}/{layer}/{table}"

    def delta_storage_options(self) -> dict[str, str]:
        """Options delta-rs needs when the lake root is on S3; empty for a local lake."""
        if not self.lake_root.startswith("s3://"):
            return {}
        return {
            "AWS_ENDPOINT_URL": self.s3_endpoint_url,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": self.s3_access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.s3_secret_access_key,
            "AWS_REGION": self.s3_region,
            "aws_conditional_put": "etag",
        }


_ENV_PREFIX = "LAKEHOUSE_"


def _usable_cores() -> int:
    """The cores this process may run on (CPU affinity, e.g. `taskset` or a container's cpuset)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _defaults(data_dir: Path) -> dict[str, object]:
    return {
        "data_dir": data_dir,
        "lake_root": str(data_dir / "lake"),
        "kafka_bootstrap": "127.0.0.1:9092",
        "topic_prefix": "shop",
        "postgres_dsn": "postgresql://postgres@127.0.0.1:5432/shop",
        "s3_endpoint_url": "http://127.0.0.1:5000",
        "s3_bucket": "lakehouse-raw",
        "s3_access_key_id": "testing",
        "s3_secret_access_key": "testing",
        "s3_region": "us-east-1",
        "events_prefix": "raw/events",
        "lineage_file": data_dir / "lineage" / "events.jsonl",
        "dbt_project_dir": PROJECT_DIR / "dbt_project",
        "cdc_flattened_records": False,
        # decoding is CPU-bound Python: one process per core, but a few are enough to outrun the consumer
        "cdc_decode_workers": min(_usable_cores(), 4),
        # Delta's own default (delta.deletedFileRetentionDuration): time travel and long reads keep working
        "vacuum_retention_hours": 168,
        "partitions_start_date": "2026-01-01",
        "status_stale_after_hours": 2,
        # about three hours of a busy shop's changes (30 orders a minute, ~8 change events each)
        "status_max_kafka_lag": 50_000,
        "transform_memory_gb": 4,
    }


def _from_stack_state(state_file: Path) -> dict[str, object]:
    """Endpoints of the local stack, if `lakehouse stack up` has written them."""
    if not state_file.exists():
        return {}
    try:
        state = json.loads(state_file.read_text())
    except json.JSONDecodeError as exc:
        raise SettingsError(
            f"{state_file}: not valid JSON ({exc}); delete it and run `lakehouse stack up` (processes of a stack "
            "that still runs keep their ports until stopped by hand)"
        ) from exc
    values: dict[str, object] = {}
    try:
        if not isinstance(state, dict):
            raise TypeError(f"mapping at the top, found {type(state).__name__}")
        if "postgres" in state:
            pg = state["postgres"]
            values["postgres_dsn"] = f"postgresql://postgres@127.0.0.1:{pg['port']}/{pg['database']}"
        if "kafka" in state:
            values["kafka_bootstrap"] = f"127.0.0.1:{state['kafka']['port']}"
        if "s3" in state:
            values["s3_endpoint_url"] = f"http://127.0.0.1:{state['s3']['port']}"
            values["s3_bucket"] = state["s3"]["bucket"]
    except (KeyError, TypeError) as exc:
        raise SettingsError(
            f"{state_file}: not a stack state file written by `lakehouse stack up` (no {exc}); delete it and run "
            "`lakehouse stack up` (processes of a stack that still runs keep their ports until stopped by hand)"
        ) from exc
    return values


_PATH_FIELDS = {"data_dir", "lineage_file", "dbt_project_dir"}


_BOOL_FIELDS = {"cdc_flattened_records"}
_HOURS_FIELDS = {"vacuum_retention_hours", "status_stale_after_hours"}
_COUNT_FIELDS = {"cdc_decode_workers", "status_max_kafka_lag", "transform_memory_gb"}
_DATE_FIELDS = {"partitions_start_date"}


def _coerce(name: str, value: object) -> object:
    if name in _PATH_FIELDS:
        return Path(value)
    if name in _BOOL_FIELDS:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes", "false", "0", "no"):
            return str(value).lower() in ("true", "1", "yes")
        raise SettingsError(f"setting {name} must be true or false, got {value!r}")
    if name in _HOURS_FIELDS:
        if str(value).isdigit():
            return int(value)
        raise SettingsError(f"setting {name} must be a whole number of hours (0 or more), got {value!r}")
    if name in _DATE_FIELDS:
        try:
            return date.fromisoformat(str(value)).isoformat()
        except ValueError:
            raise SettingsError(f"setting {name} must be a date like 2026-01-01, got {value!r}") from None
    if name in _COUNT_FIELDS:
        if str(value).isdigit() and int(value) >= 1:
            return int(value)
        raise SettingsError(f"setting {name} must be a whole number, 1 or more, got {value!r}")
    return str(value)


def _from_config_file(config_file: Path, named_by_env: bool, names: set[str]) -> dict[str, object]:
    if not config_file.exists():
        if named_by_env:
            raise SettingsError(f"{_ENV_PREFIX}CONFIG names {config_file}, which does not exist")
        return {}
    try:
        from_file = yaml.safe_load(config_file.read_text()) or {}
    except OSError as exc:
        raise SettingsError(f"{config_file}: cannot read the settings file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{config_file}: not UTF-8 text (byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise SettingsError(f"{config_file}: not valid YAML{where}: {problem}") from exc
    if not isinstance(from_file, dict):
        raise SettingsError(f"{config_file}: expected a mapping of setting: value, got {type(from_file).__name__}")
    unknown = set(from_file) - names
    if unknown:
        raise SettingsError(f"{config_file}: unknown setting(s) {sorted(unknown)}; known: {sorted(names)}")
    empty = sorted(name for name, value in from_file.items() if value is None)
    if empty:
        raise SettingsError(f"{config_file}: setting(s) {empty} have no value; give one or remove the line")
    nested = sorted(name for name, value in from_file.items() if isinstance(value, (list, dict)))
    if nested:
        raise SettingsError(f"{config_file}: setting(s) {nested} take a single value, not a list or mapping")
    return from_file


def load_settings(env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    names = {f.name for f in fields(Settings)}
    config_key = f"{_ENV_PREFIX}CONFIG"
    from_file = _from_config_file(Path(env.get(config_key, PROJECT_DIR / "lakehouse.yaml")), config_key in env, names)
    # the defaults under the data dir (lake, lineage file, stack state) follow it wherever it is set
    data_dir = Path(env.get(f"{_ENV_PREFIX}DATA_DIR") or from_file.get("data_dir") or PROJECT_DIR / "data").resolve()
    values = _defaults(data_dir)
    values.update(from_file)
    values.update(_from_stack_state(data_dir / "stack" / "state.json"))

    for name in names:
        key = f"{_ENV_PREFIX}{name.upper()}"
        if key in env:
            values[name] = env[key]
    values["data_dir"] = data_dir

    settings = Settings(**{name: _coerce(name, values[name]) for name in names})
    # a relative path means the directory the command started in: resolved once, since dbt (started in
    # dbt_project/) and other processes read it from elsewhere
    lake_root = settings.lake_root.rstrip("/")
    if "://" not in lake_root:
        lake_root = str(Path(lake_root).resolve())
    return replace(settings, lake_root=lake_root, lineage_file=settings.lineage_file.resolve(),
                   dbt_project_dir=settings.dbt_project_dir.resolve())
