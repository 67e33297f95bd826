"""`lakehouse status`: is the lake keeping up, and where is it not?

What an operator (or a monitoring probe) asks before anything else: how far bronze is behind each Kafka
topic, when each asset last materialized and whether a blocking quality check failed, and how many rows
the last 24 hours put aside (bronze quarantine, silver rejects). Counts and names only: never a value
from a row, so the output can go to any log or chat.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

import pyarrow.dataset as ds
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from pipelines.cdc.ingest import (
    CDC_STREAMS, KafkaTopicError, bronze_table_for, kafka_consumer, stored_offsets, topic_for,
)
from pipelines.lake import delta_table_exists
from pipelines.settings import Settings

# exit status of `lakehouse status` when it found a problem (1 is a command that could not run)
UNHEALTHY = 2
_WINDOW = timedelta(hours=24)


def kafka_lag(settings: Settings, topics: list[str], timeout: float = 10.0) -> dict[str, dict[int, int] | None]:
    """Records each partition of each topic holds that bronze has not committed: the high-water mark
    minus the next offset stored in the bronze table's Delta commits (from the low mark if never read).
    None for a topic the broker does not have; a KafkaTopicError if the broker does not answer."""
    consumer = kafka_consumer(settings)
    try:
        lag = {}
        for topic in topics:
            try:
                metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
            except KafkaException as exc:
                reason = exc.args[0].str() if exc.args and isinstance(exc.args[0], KafkaError) else str(exc)
                raise KafkaTopicError(f"Kafka at {settings.kafka_bootstrap} does not answer: {reason}") from exc
            if metadata is None or metadata.error is not None:
                lag[topic] = None
                continue
            partitions = sorted(metadata.partitions)
            stored = stored_offsets(settings.bronze_path(bronze_table_for(topic)), topic, partitions,
                                    settings.delta_storage_options())
            lag[topic] = {}
            for p in partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
                lag[topic][p] = max(high - max(stored.get(p, low), low), 0)
        return lag
    finally:
        consumer.close()


@dataclass
class AssetHealth:
    last_materialized: str | None  # ISO 8601, UTC
    failed_error_checks: list[str] = field(default_factory=list)  # these block the asset's children
    failed_warning_checks: list[str] = field(default_factory=list)


def asset_health(instance, graph) -> dict[str, AssetHealth]:
    """Per asset of the definitions: its latest materialization and the checks whose latest run failed."""
    import dagster as dg

    health = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        event = instance.get_latest_materialization_event(key)
        health[key.to_user_string()] = AssetHealth(
            last_materialized=datetime.fromtimestamp(event.timestamp, UTC).isoformat() if event else None)
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(list(graph.asset_check_keys))
    for check_key, record in latest.items():
        evaluation = record.evaluation
        if evaluation is None or evaluation.passed or check_key.asset_key.to_user_string() not in health:
            continue  # planned or running, passed, or a check of an asset no longer defined
        asset = health[check_key.asset_key.to_user_string()]
        failed = (asset.failed_error_checks if evaluation.severity == dg.AssetCheckSeverity.ERROR
                  else asset.failed_warning_checks)
        failed.append(check_key.name)
    return health


def rows_since(settings: Settings, layer: str, table: str, column: str, since: datetime) -> int:
    """Rows of a Delta table whose timestamp `column` is at or after `since` (0 when there is no table)."""
    from deltalake import DeltaTable

    path = settings.layer_path(layer, table)
    if not delta_table_exists(path, settings):
        return 0
    dataset = DeltaTable(path, storage_options=settings.delta_storage_options() or None).to_pyarrow_dataset()
    return dataset.count_rows(filter=ds.field(column) >= since)


@dataclass
class LakeStatus:
    checked_at: str
    kafka_bootstrap: str
    kafka_lag: dict[str, dict[int, int] | None] | None  # None: Kafka did not answer; per topic: no such topic
    assets: dict[str, AssetHealth]
    quarantined_24h: int
    rejected_24h: int
    problems: list[str]

    @property
    def healthy(self) -> bool:
        return not self.problems

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "healthy": self.healthy}, indent=2)

    def report(self) -> str:
        answer = "records not yet in bronze" if self.kafka_lag is not None else "no answer"
        lines = [f"Kafka {self.kafka_bootstrap}: {answer}"]
        for topic, partitions in (self.kafka_lag or {}).items():
            lines.append(f"  {topic:<28} {'no such topic' if partitions is None else f'{sum(partitions.values()):,}':>13}")
        lines.append("Assets: last materialization (UTC), failed checks")
        for key, a in self.assets.items():
            when = a.last_materialized[:19].replace("T", " ") if a.last_materialized else "never"
            failed = [f"{c} (ERROR)" for c in a.failed_error_checks] + [f"{c} (WARN)" for c in a.failed_warning_checks]
            checks = ", ".join(failed) or ("checks passed" if a.last_materialized else "")
            lines.append(f"  {key:<34} {when:<19}  {checks}".rstrip())
        lines.append(f"Last 24 h: {self.quarantined_24h:,} records quarantined (bronze/quarantine), "
                     f"{self.rejected_24h:,} rows rejected (silver/rejects)")
        if self.healthy:
            lines.append("healthy")
        else:
            lines.append(f"unhealthy: {len(self.problems)} problem(s)")
            lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


def _problems(settings: Settings, lag, lag_error: str | None, assets: dict[str, AssetHealth], now: datetime) -> list[str]:
    problems = [lag_error] if lag_error else []
    for topic, partitions in (lag or {}).items():
        if partitions is None:
            problems.append(f"{topic}: no such topic on {settings.kafka_bootstrap} (is the connector running?)")
            continue
        behind = sum(partitions.values())
        if behind > settings.status_max_kafka_lag:
            problems.append(f"{topic}: bronze is {behind:,} records behind (status_max_kafka_lag "
                            f"{settings.status_max_kafka_lag:,})")
    never = [key for key, a in assets.items() if a.last_materialized is None]
    if never:  # one line, not one per asset: a new lake has none materialized
        problems.append(f"{len(never)} of {len(assets)} assets never materialized: {_first_few(never)}")
    stale_before = now - timedelta(hours=settings.status_stale_after_hours)
    stale = [key for key, a in assets.items()
             if a.last_materialized and datetime.fromisoformat(a.last_materialized) < stale_before]
    if stale:
        problems.append(f"{len(stale)} assets stale, not materialized for {settings.status_stale_after_hours} h "
                        f"(status_stale_after_hours): {_first_few(stale)}")
    for key, a in assets.items():
        if a.failed_error_checks:
            problems.append(f"{key}: blocked, its children do not run while {', '.join(a.failed_error_checks)} "
                            "fails (ERROR)")
    return problems


def _first_few(keys: list[str], shown: int = 5) -> str:
    return ", ".join(keys[:shown]) + (f" and {len(keys) - shown} more" if len(keys) > shown else "")


def lake_status(settings: Settings) -> LakeStatus:
    import dagster as dg

    from pipelines.cdc.discovery import ingestable, undeclared_source_topics
    from pipelines.definitions import defs
    from pipelines.run import dagster_home

    now = datetime.now(UTC)
    lag, lag_error = None, None
    try:
        lag = kafka_lag(settings, [topic_for(settings, s) for s in CDC_STREAMS])
        lag |= kafka_lag(settings, ingestable(undeclared_source_topics(settings)))
    except KafkaTopicError as exc:
        lag_error = str(exc)
    dagster_home()
    with dg.DagsterInstance.get() as instance:
        assets = asset_health(instance, defs.resolve_asset_graph())
    return LakeStatus(
        checked_at=now.isoformat(), kafka_bootstrap=settings.kafka_bootstrap, kafka_lag=lag, assets=assets,
        quarantined_24h=rows_since(settings, "bronze", "quarantine", "first_seen", now - _WINDOW),
        rejected_24h=rows_since(settings, "silver", "rejects", "rejected_at", now - _WINDOW),
        problems=_problems(settings, lag, lag_error, assets, now),
    )
