"""One JSON line of an S3 event object → a bronze event row or the reason it is rejected. Pure.

Two envelopes arrive from the services and map to the same bronze columns:

- the platform event schema: `eventId, eventType, eventSource, timestamp, version, data{payload,
  metadata}, correlationId, userId, sessionId, environment, region`;
- CloudEvents 1.0 in JSON form: `specversion, type, source, id, time, subject, data{entityId,
  entityType, action, payload, metadata{correlationId, causationId, userId}}`.

Validation is what the seed schema requires: eventId (CloudEvents `id`), eventType (`type`),
timestamp (`time`) and data present; ids are UUIDs; timestamps are ISO-8601 with a UTC offset (a
naive time names no instant); the type is one the platform knows (`KNOWN_EVENT_TYPES`, the list the
workload writes). A CloudEvents type may carry a reverse-DNS prefix (`com.shop.order.created`): its
last two dot-separated parts must then be a known type, which is what bronze stores.

`parse_line` is the whole contract and what the tests exercise; the ingest calls it once per line.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from pipelines.workload.model import EVENT_TYPES

try:  # about 5x faster than the standard library on these lines; same results (see _loads)
    import orjson
except ImportError:  # pragma: no cover - orjson comes with dagster-dbt
    orjson = None

KNOWN_EVENT_TYPES = frozenset(EVENT_TYPES)
PLATFORM = "platform"
CLOUDEVENTS = "cloudevents"

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}").fullmatch
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_ASCII_DIGITS = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}").match


class EventRow(NamedTuple):
    """The bronze columns one valid line yields (a tuple: the ingest builds columns from a million)."""

    event_id: str
    event_type: str
    event_source: str | None
    event_ts_us: int  # microseconds since the Unix epoch, UTC
    version: str | None
    correlation_id: str | None
    user_id: str | None
    session_id: str | None
    payload: str | None  # JSON text of data.payload
    metadata: str | None  # JSON text of data.metadata
    envelope: str  # PLATFORM | CLOUDEVENTS
    environment: str | None
    region: str | None

    @property
    def event_ts(self) -> datetime:
        return datetime.fromtimestamp(self.event_ts_us / 1_000_000, tz=UTC)


class LineError(NamedTuple):
    """Why a line cannot become a bronze row: one line of text, for bronze/quarantine."""

    reason: str


class _Invalid(Exception):
    pass


def _show(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


# every digit → "0", everything else → "x": a run of 19 zeros marks a number orjson may not keep exact
# (it keeps integers from -2**63 to 2**64 - 1, and -9223372036854775809 has 19 digits)
_DIGIT_CLASS = bytes(48 if 48 <= i <= 57 else 120 for i in range(256))
_LONG_NUMBER = b"0" * 19


_INF = float("inf")


def _finite(text: str) -> float:
    value = float(text)
    if value in (_INF, -_INF):
        raise ValueError(f"number {_show(text)} is beyond the range of a double")
    return value


def _loads(raw: bytes) -> tuple[object, bool]:
    """Parse strict JSON (no NaN/Infinity, no number that overflows a double); returns (value,
    parsed_by_orjson)."""
    # orjson turns integers beyond 64 bits into floats (silently inexact): such lines, and whatever
    # orjson refuses, are left to the standard parser, which is exact and judges validity alike
    if orjson is not None and _LONG_NUMBER not in raw.translate(_DIGIT_CLASS):
        try:
            return orjson.loads(raw), True
        except orjson.JSONDecodeError:
            pass
    return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite), False


def _dumps(value: object, fast: bool) -> str:
    if fast:
        try:
            return orjson.dumps(value).decode()
        except orjson.JSONEncodeError:  # nested deeper than orjson writes (255 levels)
            pass
    # ensure_ascii keeps lone surrogates (legal escapes in JSON, illegal in UTF-8 text) as escapes
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True)


def _required(obj: dict, name: str) -> object:
    value = obj.get(name)
    if value is None:
        raise _Invalid(f"missing required field {name}")
    return value


def _uuid(value: object, name: str) -> str:
    if type(value) is not str or not _UUID(value):
        raise _Invalid(f"{name} is not a UUID: {_show(value)}")
    return value.lower()


def _optional_uuid(obj: dict, name: str, field: str | None = None) -> str | None:
    value = obj.get(name)
    return None if value is None else _uuid(value, field or name)


def _optional_text(obj: dict, name: str, field: str | None = None) -> str | None:
    value = obj.get(name)
    if value is None or type(value) is str:
        return value
    raise _Invalid(f"{field or name} is not a string: {_show(value)}")


def _timestamp_us(value: object, name: str) -> int:
    if type(value) is not str or not _ASCII_DIGITS(value):
        raise _Invalid(f"{name} is not an ISO-8601 timestamp: {_show(value)}")
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise _Invalid(f"{name} is not an ISO-8601 timestamp: {_show(value)}") from None
    if ts.tzinfo is None:
        raise _Invalid(f"{name} has no UTC offset (naive times name no instant): {_show(value)}")
    return (ts - _EPOCH) // _MICROSECOND


def _event_type(value: object, name: str, allow_prefix: bool) -> str:
    if type(value) is str:
        if value in KNOWN_EVENT_TYPES:
            return value
        if allow_prefix:
            short = ".".join(value.rsplit(".", 2)[-2:])
            if short in KNOWN_EVENT_TYPES:
                return short
    raise _Invalid(f"unknown event type {name}={_show(value)}")


def _data(obj: dict) -> dict:
    data = _required(obj, "data")
    if type(data) is not dict:
        raise _Invalid(f"data is not an object: {_show(data)}")
    return data


def _json_text(data: dict, name: str, fast: bool) -> str | None:
    value = data.get(name)
    return None if value is None else _dumps(value, fast)


def _platform(obj: dict, fast: bool) -> EventRow:
    event_id = _uuid(_required(obj, "eventId"), "eventId")
    event_type = _event_type(_required(obj, "eventType"), "eventType", allow_prefix=False)
    ts = _timestamp_us(_required(obj, "timestamp"), "timestamp")
    data = _data(obj)
    return EventRow(
        event_id,
        event_type,
        _optional_text(obj, "eventSource"),
        ts,
        _optional_text(obj, "version"),
        _optional_uuid(obj, "correlationId"),
        _optional_uuid(obj, "userId"),
        _optional_uuid(obj, "sessionId"),
        _json_text(data, "payload", fast),
        _json_text(data, "metadata", fast),
        PLATFORM,
        _optional_text(obj, "environment"),
        _optional_text(obj, "region"),
    )


def _cloudevent(obj: dict, fast: bool) -> EventRow:
    if obj.get("specversion") != "1.0":
        raise _Invalid(f"unsupported CloudEvents specversion {_show(obj.get('specversion'))} (expected '1.0')")
    event_id = _uuid(_required(obj, "id"), "id")
    event_type = _event_type(_required(obj, "type"), "type", allow_prefix=True)
    source = _required(obj, "source")
    if type(source) is not str:
        raise _Invalid(f"source is not a string: {_show(source)}")
    ts = _timestamp_us(_required(obj, "time"), "time")
    data = _data(obj)
    metadata = data.get("metadata")
    if metadata is not None and type(metadata) is not dict:
        raise _Invalid(f"data.metadata is not an object: {_show(metadata)}")
    meta = metadata or {}
    return EventRow(
        event_id,
        event_type,
        source,
        ts,
        _optional_text(obj, "dataversion"),
        _optional_uuid(meta, "correlationId", "data.metadata.correlationId"),
        _optional_uuid(meta, "userId", "data.metadata.userId"),
        _optional_uuid(meta, "sessionId", "data.metadata.sessionId"),
        _json_text(data, "payload", fast),
        None if metadata is None else _dumps(metadata, fast),
        CLOUDEVENTS,
        _optional_text(obj, "environment"),
        _optional_text(obj, "region"),
    )


def _check_text(row: EventRow) -> None:
    """Lines parsed by the standard library may hold lone surrogates, which no UTF-8 column can store."""
    for value in row:
        if type(value) is str:
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise _Invalid("a string holds an invalid Unicode escape (lone surrogate)") from None


def parse_line(raw: bytes, *, unterminated: bool = False) -> EventRow | LineError:
    """Validate one line (without its newline) and map it to bronze columns.

    `unterminated` says the line is the last of its object and had no newline: if it is not valid JSON
    it was most likely cut off, and the reason says so.
    """
    try:
        obj, fast = _loads(raw)
    except RecursionError:
        return LineError("nested too deeply to parse (JSON deeper than about 1,000 levels)")
    except UnicodeDecodeError as exc:
        return LineError(f"not UTF-8 text: {exc.reason} at byte {exc.start}")
    except ValueError as exc:
        prefix = "truncated last line (no newline), not valid JSON" if unterminated else "not valid JSON"
        return LineError(f"{prefix}: {str(exc).splitlines()[0]}")
    if type(obj) is not dict:
        return LineError(f"not a JSON object: {type(obj).__name__}")
    try:
        row = _cloudevent(obj, fast) if "specversion" in obj else _platform(obj, fast)
        if not fast:
            _check_text(row)
        return row
    except _Invalid as exc:
        return LineError(str(exc))
    except RecursionError:
        return LineError("nested too deeply to store (JSON deeper than about 1,000 levels)")
