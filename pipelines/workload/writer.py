"""The workload's edges: executes simulated transactions in Postgres and writes their events as JSON lines.

Each simulated business step commits as one SQL transaction, so Debezium's transaction metadata groups
the same changes the business step made. Events are buffered per simulated hour and an hour's object is
written once no later step can add to it (steps come in time order and no step emits events dated
before itself), so memory stays bounded by about an hour of events whatever the run length.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from pipelines.settings import Settings
from pipelines.workload.model import (
    TABLES,
    BusinessEvent,
    Delete,
    Insert,
    Tally,
    Transaction,
    Update,
    WorkloadError,
    WorkloadSummary,
)
from pipelines.workload.simulation import DEFAULT_RATE, DEFAULT_START, WorkloadConfig, simulate

SCHEMA_FILE = Path(__file__).with_name("schema.sql")


# -- Postgres --------------------------------------------------------------------------------------------


def connect(dsn: str) -> psycopg.Connection:
    """An autocommit connection (each step opens its own transaction block); connection failures as WorkloadError."""
    try:
        return psycopg.connect(dsn, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WorkloadError(f"cannot connect to Postgres at {_safe_dsn(dsn)}: {detail}") from exc


def apply_schema(conn: psycopg.Connection) -> None:
    """Create the OLTP tables if they are missing (the schema file is idempotent)."""
    conn.execute(SCHEMA_FILE.read_text())


def check_schema(conn: psycopg.Connection) -> None:
    missing = [t for t in TABLES if conn.execute("select to_regclass(%s)", (f"public.{t}",)).fetchone()[0] is None]
    if missing:
        raise WorkloadError(
            f"Postgres database {conn.info.dbname!r} lacks table(s) {', '.join(missing)}: apply {SCHEMA_FILE} "
            "(`lakehouse stack up` does) before running the workload"
        )


def _adapt(value: object) -> object:
    return Jsonb(value) if isinstance(value, dict | list) else value


class PostgresWriter:
    """Turns row operations into SQL; consecutive inserts into one table go as one batch."""

    def __init__(self, conn: psycopg.Connection, seed: int):
        self.conn = conn
        self.seed = seed
        self._statements: dict[tuple, bytes] = {}

    def execute(self, tx: Transaction) -> None:
        if not tx.operations:
            return
        try:
            with self.conn.transaction(), self.conn.cursor() as cur:
                batch: list[Insert] = []
                for op in tx.operations:
                    if batch and not (isinstance(op, Insert) and op.table == batch[0].table):
                        self._insert(cur, batch)
                        batch = []
                    if isinstance(op, Insert):
                        batch.append(op)
                    elif isinstance(op, Update):
                        self._update(cur, op)
                    else:
                        self._delete(cur, op)
                if batch:
                    self._insert(cur, batch)
        except psycopg.errors.UniqueViolation as exc:
            raise WorkloadError(
                f"{exc.diag.message_primary} ({exc.diag.message_detail}): has seed {self.seed} already run "
                "against this database? Use another seed or a fresh database"
            ) from exc

    def _statement(self, key: tuple, build) -> bytes:
        # Rendered once: composing identifiers on every execution cost ~10% of the CPU time of a run.
        if key not in self._statements:
            self._statements[key] = build().as_bytes(self.conn)
        return self._statements[key]

    def _insert(self, cur: psycopg.Cursor, batch: list[Insert]) -> None:
        table = batch[0].table
        columns = tuple(batch[0].row.columns())
        statement = self._statement(
            ("insert", table, columns),
            lambda: sql.SQL("insert into public.{} ({}) values ({})").format(
                sql.Identifier(table),
                sql.SQL(", ").join(map(sql.Identifier, columns)),
                sql.SQL(", ").join(sql.Placeholder() * len(columns)),
            ),
        )
        rows = [[_adapt(v) for v in op.row.columns().values()] for op in batch]
        if len(rows) == 1:
            cur.execute(statement, rows[0])
        else:
            cur.executemany(statement, rows)

    def _update(self, cur: psycopg.Cursor, op: Update) -> None:
        columns = tuple(name for name, _ in op.changes)
        statement = self._statement(
            ("update", op.table, columns),
            lambda: sql.SQL("update public.{} set {} where {} = %s and version = %s").format(
                sql.Identifier(op.table),
                sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in columns),
                sql.Identifier(op.key_column),
            ),
        )
        cur.execute(statement, [*(_adapt(v) for _, v in op.changes), op.key, op.expected_version])
        if cur.rowcount != 1:
            raise WorkloadError(
                f"{op.table} row {op.key} is not at version {op.expected_version}: "
                "it was changed or deleted outside this workload run"
            )

    def _delete(self, cur: psycopg.Cursor, op: Delete) -> None:
        table, key_column = op.row.table, op.row.key_column
        statement = self._statement(
            ("delete", table),
            lambda: sql.SQL("delete from public.{} where {} = %s").format(
                sql.Identifier(table), sql.Identifier(key_column)
            ),
        )
        cur.execute(statement, [op.row.key])
        if cur.rowcount != 1:
            raise WorkloadError(f"{table} row {op.row.key} to delete is missing: deleted outside this workload run")


# -- events ----------------------------------------------------------------------------------------------


class EventSink(Protocol):
    def check(self) -> None: ...
    def put(self, relative_path: str, body: bytes) -> None: ...


class S3EventSink:
    def __init__(self, settings: Settings):
        import boto3
        from botocore.config import Config

        self.bucket = settings.s3_bucket
        self.prefix = settings.events_prefix.strip("/")
        self.endpoint = settings.s3_endpoint_url
        self.client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=settings.s3_secret_access_key,
            region_name=settings.s3_region,
            config=Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 3}),
        )

    def check(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise WorkloadError(f"S3 bucket {self.bucket!r} at {self.endpoint} is not usable: {exc}") from exc

    def put(self, relative_path: str, body: bytes) -> None:
        key = f"{self.prefix}/{relative_path}" if self.prefix else relative_path
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/x-ndjson")


class DirectoryEventSink:
    """The S3 layout under a local folder (the folder stands for `<bucket>/<events_prefix>`)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorkloadError(f"cannot create events folder {self.root}: {exc.strerror}") from exc

    def put(self, relative_path: str, body: bytes) -> None:
        target = self.root / relative_path
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        partial.write_bytes(body)
        os.replace(partial, target)  # readers never see half an object


def event_object_path(hour: datetime, run_id: str) -> str:
    """Where one simulated hour's events go, partitioned by the events' (UTC) date."""
    hour = hour.astimezone(UTC)
    return (
        f"year={hour:%Y}/month={hour:%m}/day={hour:%d}/"
        f"events-{hour:%Y%m%dT%H}-{run_id}.jsonl"
    )


class HourlyEventBuffer:
    def __init__(self, sink: EventSink, run_id: str):
        self.sink = sink
        self.run_id = run_id
        self.hours: dict[datetime, list[BusinessEvent]] = {}
        self.objects_written = 0

    def add(self, events: Iterable[BusinessEvent]) -> None:
        for event in events:
            hour = event.timestamp.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
            self.hours.setdefault(hour, []).append(event)

    def flush_before(self, now: datetime) -> None:
        """Write every hour that ended at or before `now`; nothing later can be dated in it."""
        for hour in sorted(h for h in self.hours if h + timedelta(hours=1) <= now):
            self._write(hour)

    def flush_all(self) -> None:
        for hour in sorted(self.hours):
            self._write(hour)

    def _write(self, hour: datetime) -> None:
        events = sorted(self.hours.pop(hour), key=lambda e: e.timestamp)
        body = "".join(json.dumps(e.to_json(), ensure_ascii=False, separators=(",", ":")) + "\n" for e in events)
        self.sink.put(event_object_path(hour, self.run_id), body.encode())
        self.objects_written += 1


# -- the run ---------------------------------------------------------------------------------------------


def execute_workload(config: WorkloadConfig, conn: psycopg.Connection, sink: EventSink) -> WorkloadSummary:
    """Run the simulation: every transaction into Postgres, every event to the sink; returns what was done."""
    started = time.monotonic()
    check_schema(conn)
    sink.check()
    writer = PostgresWriter(conn, config.seed)
    events = HourlyEventBuffer(sink, config.run_id)
    tally = Tally()
    for tx in simulate(config):
        events.flush_before(tx.at)
        writer.execute(tx)
        events.add(tx.events)
        tally.add(tx)
    events.flush_all()
    summary = tally.summary(config.seed, config.start, config.end, event_objects=events.objects_written)
    return replace(summary, elapsed_seconds=time.monotonic() - started)


def run_workload(
    settings: Settings,
    *,
    seed: int,
    customers: int,
    days: int,
    rate: float = DEFAULT_RATE,
    start: datetime = DEFAULT_START,
    events_dir: Path | None = None,
    dsn: str | None = None,
) -> WorkloadSummary:
    """The workload against the configured Postgres (or `dsn`) and S3 (or a local `events_dir`)."""
    config = WorkloadConfig(seed=seed, customers=customers, days=days, rate=rate, start=start, region=settings.s3_region)
    sink: EventSink = DirectoryEventSink(events_dir) if events_dir is not None else S3EventSink(settings)
    with connect(dsn or settings.postgres_dsn) as conn:
        return execute_workload(config, conn, sink)


def _safe_dsn(dsn: str) -> str:
    """The DSN without a password, fit for an error message."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<invalid DSN>"
    host, port, db = info.get("host", "localhost"), info.get("port", "5432"), info.get("dbname", "")
    return f"{host}:{port}/{db}"

