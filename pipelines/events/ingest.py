"""Raw event objects of one day prefix → `bronze/events`, each object version exactly once.

Exactly-once argument (docs/decisions.md, "bronze events: exactly once per object"):

- The record of what was ingested is part of the data: every ingested object version (key, ETag)
  has an `object` row in `bronze/events`, written in the same Delta commit as its event rows. A commit
  holds whole objects only. So after any crash an object version is either completely in bronze
  (its object row and all its rows) or not at all, and the set to skip is read back from the table:
  the current `object` rows of the day's partition (`object_day=<day>/row_kind=object`), a read
  whose cost follows that day, not the table's history.
- A rewritten object (same key, new ETag) is ingested again; its new rows and the marking of the old
  version's rows as superseded (`superseded_at`, `superseded_by_etag`) are one Delta MERGE, one
  commit. No state exists in which both versions look current, or neither does.
- Quarantine is a second table, so it cannot share that commit. It is committed first, as CDC does,
  with a Delta app transaction `events/<day>` → the day's batch number, which the bronze commit of
  the same batch also carries, and with `ingest_batch_id = events/<day>#<batch number>`. If the
  quarantine's number is ahead of bronze's, a crash hit between the two commits: the lines that
  quarantine commit holds are skipped, and the objects it covers all go into the next batch, so the
  next bronze commit completes them.
- Bytes are read with `If-Match: <ETag>`: the rows recorded under an ETag come from the bytes that
  have it; an object rewritten between listing and reading is left to the next run.
"""

from __future__ import annotations

import gzip
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

from pipelines.cdc.bronze_schema import QUARANTINE
from pipelines.events.bronze_schema import BRONZE_EVENTS, EVENT, OBJECT, PARTITION_BY
from pipelines.events.envelope import LineError, parse_line
from pipelines.events.objects import EventStore, ObjectInfo, event_store_for, read_ahead
from pipelines.failpoints import failpoint
from pipelines.settings import Settings
from pipelines.shared_tables import commit_retrying_conflicts, open_or_create, open_table

TABLE = "events"
QUARANTINE_TABLE = "quarantine"
# lines held before a commit: bounds memory (~1.5 KB per line while parsed) and the work a crash repeats
DEFAULT_BATCH_LINES = 100_000
MAX_QUARANTINED_OBJECT_BYTES = 1024 * 1024


def app_id(day: date) -> str:
    return f"events/{day.isoformat()}"


def batch_id(day: date, number: int) -> str:
    return f"{app_id(day)}#{number}"


# -- reading one object ------------------------------------------------------------------------------


@dataclass
class ParsedObject:
    """One object version's lines, split into bronze rows and quarantine entries."""

    info: ObjectInfo
    line_numbers: list[int] = field(default_factory=list)
    raw_lines: list[bytes] = field(default_factory=list)
    rows: list[tuple] = field(default_factory=list)  # EventRow tuples, aligned with the two lists above
    rejected: list[tuple[int, bytes | None, str]] = field(default_factory=list)  # (line, raw, reason)
    lines_read: int = 0


def _decompress(data: bytes) -> bytes:
    if data[:2] != b"\x1f\x8b":
        return data
    return gzip.decompress(data)


def parse_object(info: ObjectInfo, data: bytes) -> ParsedObject:
    """Every non-blank line of the object, validated; line numbers count every line, from 1."""
    parsed = ParsedObject(info)
    try:
        text = _decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        # the object as a whole is unreadable: one quarantine entry (line 0) keeps it and the reason
        raw = data if len(data) <= MAX_QUARANTINED_OBJECT_BYTES else None
        parsed.rejected.append((0, raw, f"object is not readable gzip: {exc}"))
        parsed.lines_read = 1
        return parsed
    lines = text.split(b"\n")
    unterminated_last = len(lines) - 1 if lines[-1] else -1
    if not lines[-1]:
        lines.pop()
    rows, numbers, raws = parsed.rows, parsed.line_numbers, parsed.raw_lines
    for index, raw in enumerate(lines):
        if raw[-1:] == b"\r":
            raw = raw[:-1]
        if not raw or raw.isspace():
            continue
        parsed.lines_read += 1
        result = parse_line(raw, unterminated=index == unterminated_last)
        if type(result) is LineError:
            reason = result.reason
            if b"\r" in raw:  # a whole object of them reads as one line: say why
                reason = f"line breaks are CR only (JSON Lines ends lines with LF or CRLF); {reason}"
            parsed.rejected.append((index + 1, raw, reason))
        else:
            rows.append(result)
            numbers.append(index + 1)
            raws.append(raw)
    return parsed


# -- what the table already holds ------------------------------------------------------------------


def object_versions(table: DeltaTable | None, day: date) -> tuple[dict[str, str], Counter[tuple[str, str]]]:
    """Object key → current ETag, and how often each (key, ETag) was ingested (an object rewritten A, B,
    then A again arrives twice with ETag A), from the day's `object` rows only (one small partition)."""
    if table is None:
        return {}, Counter()
    dataset = table.to_pyarrow_dataset(
        file_pruning_predicate=[("object_day", "=", day.isoformat()), ("row_kind", "=", OBJECT)]
    )
    found = dataset.to_table(columns=["object_key", "etag", "superseded_at"])
    keys, etags = found["object_key"].to_pylist(), found["etag"].to_pylist()
    arrivals = Counter(zip(keys, etags, strict=True))
    current = found.filter(pc.is_null(found["superseded_at"]))
    return dict(zip(current["object_key"].to_pylist(), current["etag"].to_pylist(), strict=True)), arrivals


def quarantined_in_batch(table: DeltaTable | None, day: date, number: int) -> set[tuple[str, str, int]]:
    """(key, ETag, line) of the quarantine lines committed by one batch; read only after a crash."""
    if table is None:
        return set()
    found = table.to_pyarrow_dataset().to_table(
        columns=["object_key", "etag", "line_number"],
        filter=pc.field("ingest_batch_id") == batch_id(day, number),
    )
    return set(
        zip(found["object_key"].to_pylist(), found["etag"].to_pylist(), found["line_number"].to_pylist(), strict=True)
    )


class ConcurrentIngestError(RuntimeError):
    """Another run committed batches of the same day prefix while this one ran; this run stops."""


class DayTables:
    """The two Delta tables as this run last saw them, and what they say about one day prefix.

    Writes go through these snapshots, so a concurrent run that commits the same day's app transaction
    makes our commit fail (delta-rs checks app transactions against the snapshot read) instead of
    writing the same objects twice.
    """

    def __init__(self, settings: Settings, day: date):
        self.settings = settings
        self.day = day
        self.options = settings.delta_storage_options() or None
        self.bronze_path = settings.bronze_path(TABLE)
        self.quarantine_path = settings.bronze_path(QUARANTINE_TABLE)
        self.bronze = open_table(self.bronze_path, settings.delta_storage_options())
        self.quarantine = open_table(self.quarantine_path, settings.delta_storage_options())
        self.current, self.arrivals = object_versions(self.bronze, day)  # object key → current ETag

    def version_id(self, info: ObjectInfo) -> str:
        """The object version's id in bronze_id: `key@etag`, and `key@etag#n` for its n-th arrival."""
        earlier = self.arrivals[(info.key, info.etag)]
        return f"{info.key}@{info.etag}" if not earlier else f"{info.key}@{info.etag}#{earlier + 1}"

    def batches(self, table: DeltaTable | None) -> int:
        return (table.transaction_version(app_id(self.day)) or 0) if table is not None else 0

    @property
    def bronze_batches(self) -> int:
        return self.batches(self.bronze)

    @property
    def quarantine_batches(self) -> int:
        return self.batches(self.quarantine)

    def refresh(self, which: str) -> None:
        """Before a commit to a table we have not opened yet, or again after a conflict: the table as it
        is now (created empty if missing), provided no other run has committed a batch of this day since
        this run last looked (it would have written the same objects)."""
        if which == "bronze":
            path, table = self.bronze_path, open_or_create(
                self.bronze_path, BRONZE_EVENTS, self.options, PARTITION_BY,
                # opening the table replays the log since the last checkpoint: checkpointing every 10
                # commits keeps that (and so each run's discovery) from growing with the days ingested
                {"delta.checkpointInterval": "10"},
            )
        else:
            path, table = self.quarantine_path, open_or_create(self.quarantine_path, QUARANTINE, self.options)
        seen = self.batches(getattr(self, which))
        if self.batches(table) != seen:
            raise ConcurrentIngestError(
                f"{path}: {app_id(self.day)} moved from batch {seen} to {self.batches(table)} while this run "
                "ran: another run is ingesting this day"
            )
        setattr(self, which, table)

    def reopen(self, which: str, number: int) -> None:
        """After our commit of batch `number`: the table's latest state, which must be ours."""
        path = self.bronze_path if which == "bronze" else self.quarantine_path
        table = DeltaTable(path, storage_options=self.options)
        if self.batches(table) != number:
            raise ConcurrentIngestError(
                f"{path}: {app_id(self.day)} is at batch {self.batches(table)} after our batch {number}: "
                "another run is ingesting this day"
            )
        setattr(self, which, table)


# -- committing a batch ------------------------------------------------------------------------------


@dataclass
class Batch:
    objects: list[ParsedObject] = field(default_factory=list)
    lines: int = 0

    def add(self, parsed: ParsedObject) -> None:
        self.objects.append(parsed)
        self.lines += parsed.lines_read


def _repeat(values: list, counts: list[int], type_: pa.DataType) -> pa.Array:
    """`values[i]` repeated `counts[i]` times, built in Arrow (a million Python references are slow)."""
    import numpy as np

    indices = np.repeat(np.arange(len(values), dtype=np.int64), counts)
    return pa.array(values, type_).take(pa.array(indices))


def _event_rows(objects: list[ParsedObject], versions: list[str], day: date, now: datetime,
                ingest_batch: str) -> pa.Table:
    rows = [row for parsed in objects for row in parsed.rows]
    n = len(rows)
    counts = [len(parsed.rows) for parsed in objects]
    keys = [parsed.info.key for parsed in objects]
    etags = [parsed.info.etag for parsed in objects]
    line_numbers = [number for parsed in objects for number in parsed.line_numbers]
    columns = list(zip(*rows, strict=True)) if rows else [[]] * 13
    bronze_ids = [
        f"{version}:{number}" for parsed, version in zip(objects, versions, strict=True) for number in parsed.line_numbers
    ]
    raw_lines = pa.array([raw for parsed in objects for raw in parsed.raw_lines], pa.binary()).cast(pa.string())
    ts = pa.array(columns[3], pa.int64()).view(BRONZE_EVENTS.field("event_ts").type)
    null_int = pa.nulls(n, pa.int64())
    null_ts = pa.nulls(n, BRONZE_EVENTS.field("ingested_at").type)
    text = pa.string()
    arrays = {
        "bronze_id": pa.array(bronze_ids, text),
        "row_kind": _repeat([EVENT], [n], text),
        "event_id": pa.array(columns[0], text),
        "event_type": pa.array(columns[1], text),
        "event_source": pa.array(columns[2], text),
        "event_ts": ts,
        "version": pa.array(columns[4], text),
        "correlation_id": pa.array(columns[5], text),
        "user_id": pa.array(columns[6], text),
        "session_id": pa.array(columns[7], text),
        "payload": pa.array(columns[8], text),
        "metadata": pa.array(columns[9], text),
        "envelope": pa.array(columns[10], text),
        "environment": pa.array(columns[11], text),
        "region": pa.array(columns[12], text),
        "raw_line": raw_lines,
        "object_key": _repeat(keys, counts, text),
        "etag": _repeat(etags, counts, text),
        "line_number": pa.array(line_numbers, pa.int64()),
        "object_size": null_int,
        "object_last_modified": null_ts,
        "lines_read": null_int,
        "rows_ingested": null_int,
        "lines_quarantined": null_int,
        "superseded_at": null_ts,
        "superseded_by_etag": pa.nulls(n, text),
        "object_day": _repeat([day], [n], pa.date32()),
        "ingested_at": _repeat([now], [n], BRONZE_EVENTS.field("ingested_at").type),
        "ingest_batch_id": _repeat([ingest_batch], [n], text),
    }
    return pa.table(arrays, schema=BRONZE_EVENTS)


def _object_rows(objects: list[ParsedObject], versions: list[str], day: date, now: datetime,
                 ingest_batch: str) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "bronze_id": version,
                "row_kind": OBJECT,
                "object_key": p.info.key,
                "etag": p.info.etag,
                "object_size": p.info.size,
                "object_last_modified": p.info.last_modified,
                "lines_read": p.lines_read,
                "rows_ingested": len(p.rows),
                "lines_quarantined": len(p.rejected),
                "object_day": day,
                "ingested_at": now,
                "ingest_batch_id": ingest_batch,
            }
            for p, version in zip(objects, versions, strict=True)
        ],
        schema=BRONZE_EVENTS,
    )


def _quarantine_rows(objects: list[ParsedObject], source: str, now: datetime, ingest_batch: str,
                     already: set[tuple[str, str, int]]) -> list[dict]:
    return [
        {
            "source": source,
            "location": f"{p.info.key}:{line}",
            "raw_value": raw,
            "error": reason,
            "first_seen": now,
            "ingest_batch_id": ingest_batch,
            "object_key": p.info.key,
            "etag": p.info.etag,
            "line_number": line,
        }
        for p in objects
        for line, raw, reason in p.rejected
        if (p.info.key, p.info.etag, line) not in already
    ]


def _supersede_rows(rewritten: list[ParsedObject], versions: list[str], day: date, now: datetime,
                    ingest_batch: str) -> pa.Table:
    """One MERGE source row per rewritten object: it matches the rows of the object's older versions."""
    table = _object_rows(rewritten, versions, day, now, ingest_batch)
    return table.append_column("_supersede", pa.array([True] * table.num_rows))


def commit_batch(tables: DayTables, number: int, batch: Batch, *, source: str, now: datetime,
                 already_quarantined: set[tuple[str, str, int]]) -> None:
    """Quarantine lines, then rows + object records in one bronze commit (a MERGE if it supersedes)."""
    day = tables.day
    ingest_batch = batch_id(day, number)
    transaction = [Transaction(app_id(day), number)]
    failpoint("events.before_write")
    quarantine = _quarantine_rows(batch.objects, source, now, ingest_batch, already_quarantined)
    if quarantine:
        # CDC ingestion and other days append to quarantine too: a commit refused for a conflict with
        # theirs is retried on the table as it is then (a run of this same day makes refresh raise)
        if tables.quarantine is None:
            tables.refresh("quarantine")
        commit_retrying_conflicts(
            lambda: write_deltalake(
                tables.quarantine,
                pa.Table.from_pylist(quarantine, schema=QUARANTINE),
                mode="append",
                schema_mode="merge",  # the shared table may predate the object_key/etag/line_number columns
                commit_properties=CommitProperties(app_transactions=transaction),
            ),
            before_retry=lambda: tables.refresh("quarantine"),
        )
        tables.reopen("quarantine", number)
        failpoint("events.after_quarantine_commit")
    versions = [tables.version_id(p.info) for p in batch.objects]
    rows = pa.concat_tables([_event_rows(batch.objects, versions, day, now, ingest_batch),
                             _object_rows(batch.objects, versions, day, now, ingest_batch)])
    rewritten = [p for p in batch.objects if p.info.key in tables.current]
    supersede = (_supersede_rows(rewritten, [tables.version_id(p.info) for p in rewritten], day, now, ingest_batch)
                 if rewritten else None)
    # other days' runs (a backfill) commit to the same table, and delta-rs refuses a MERGE after any
    # concurrent append: a refused commit is retried on the table as it is then (a run of this same day
    # makes refresh raise)
    if tables.bronze is None:
        tables.refresh("bronze")
    commit_retrying_conflicts(lambda: _commit_bronze(tables, rows, supersede, transaction),
                              before_retry=lambda: tables.refresh("bronze"))
    tables.reopen("bronze", number)
    failpoint("events.after_commit")
    for parsed in batch.objects:
        tables.current[parsed.info.key] = parsed.info.etag
        tables.arrivals[(parsed.info.key, parsed.info.etag)] += 1


def _commit_bronze(tables: DayTables, rows: pa.Table, supersede: pa.Table | None, transaction: list[Transaction]) -> None:
    """Appends the batch's rows, or MERGEs them with the rows that supersede older object versions."""
    if supersede is None:
        write_deltalake(
            tables.bronze,
            rows,
            mode="append",
            partition_by=PARTITION_BY,
            commit_properties=CommitProperties(app_transactions=transaction),
        )
    else:
        source_rows = pa.concat_tables([rows.append_column("_supersede", pa.array([False] * rows.num_rows)), supersede])
        (
            tables.bronze.merge(
                source_rows,
                # a rewritten object's supersede row matches every current row of its older version
                "t.object_day = s.object_day AND t.object_key = s.object_key AND s._supersede "
                "AND t.superseded_at IS NULL AND t.etag <> s.etag",
                source_alias="s",
                target_alias="t",
                commit_properties=CommitProperties(app_transactions=transaction),
            )
            .when_matched_update({"superseded_at": "s.ingested_at", "superseded_by_etag": "s.etag"})
            .when_not_matched_insert({name: f"s.{name}" for name in BRONZE_EVENTS.names}, predicate="NOT s._supersede")
            .execute()
        )


# -- one day ------------------------------------------------------------------------------------------


@dataclass
class DayIngestResult:
    day: date | None  # None: totals over several days
    location: str
    table_path: str
    objects_listed: int = 0
    objects_ingested: int = 0
    objects_skipped: int = 0  # already in bronze with this ETag
    objects_rewritten: int = 0  # ingested again with a new ETag, older version superseded
    objects_changed_while_reading: int = 0  # left for the next run
    lines_read: int = 0
    bronze_rows: int = 0
    quarantined: int = 0  # lines of this run's objects in quarantine (including after a crash)
    commits: int = 0
    discovery_seconds: float = 0.0  # listing the day prefix + reading what bronze holds for it


def ingest_day(settings: Settings, day: date, *, store: EventStore | None = None,
               batch_lines: int = DEFAULT_BATCH_LINES, threads: int = 8, now: datetime | None = None) -> DayIngestResult:
    """Ingest every object under the day's prefix that bronze does not hold in its current version."""
    store = store or event_store_for(settings)
    source = "s3" if store.location.startswith("s3://") else "file"
    result = DayIngestResult(day, store.location, settings.bronze_path(TABLE))
    started = time.perf_counter()
    listed = store.list_day(day)
    tables = DayTables(settings, day)
    result.discovery_seconds = time.perf_counter() - started
    result.objects_listed = len(listed)
    pending = [o for o in listed if tables.current.get(o.key) != o.etag]
    result.objects_skipped = len(listed) - len(pending)

    number = tables.bronze_batches + 1
    already: set[tuple[str, str, int]] = set()
    must_complete: set[tuple[str, str]] = set()
    if tables.quarantine_batches >= number:
        # a crash hit between the quarantine and the bronze commit of batch `number` (or that run is
        # still live, about to commit it): its quarantine lines are kept (not written again) and its
        # objects alone make this run's first batch, which so has no quarantine lines to write; were
        # other objects' lines written under `number`, and the live run's commit won, they would be
        # quarantined again by the next run
        already = quarantined_in_batch(tables.quarantine, day, number)
        must_complete = {(key, etag) for key, etag, _ in already} & {(o.key, o.etag) for o in pending}
        pending.sort(key=lambda o: (o.key, o.etag) not in must_complete)
    completing = bool(must_complete)

    batch = Batch()
    for info, data in read_ahead(store, pending, threads=threads):
        must_complete.discard((info.key, info.etag))
        if data is None:
            result.objects_changed_while_reading += 1
        else:
            batch.add(parse_object(info, data))
        if not must_complete and (completing or batch.lines >= batch_lines) and batch.objects:
            completing = False
            _commit(tables, number, batch, source, now, already, result)
            number += 1
            already = set()
            batch = Batch()
    if batch.objects:
        _commit(tables, number, batch, source, now, already, result)
    return result


def _commit(tables: DayTables, number: int, batch: Batch, source: str, now: datetime | None,
            already: set, result: DayIngestResult) -> None:
    rewritten = {p.info.key for p in batch.objects if p.info.key in tables.current}
    commit_batch(tables, number, batch, source=source, now=now or datetime.now(UTC), already_quarantined=already)
    for parsed in batch.objects:
        result.objects_ingested += 1
        result.objects_rewritten += parsed.info.key in rewritten
        result.lines_read += parsed.lines_read
        result.bronze_rows += len(parsed.rows)
        result.quarantined += len(parsed.rejected)
    result.commits += 1
