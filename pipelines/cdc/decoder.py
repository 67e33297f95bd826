"""Debezium change events → decoded records. Pure functions: bytes in, dataclass out, no I/O.

Handles the value with or without its JsonConverter schema, tombstones, transaction metadata
(BEGIN/END), logical messages (op m), and the flattened rows of ExtractNewRecordState.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from pipelines.cdc.logical_types import LogicalTypeError, decode_struct

OPS = {"c", "u", "d", "r", "t", "m"}
TOAST_PLACEHOLDER = "__debezium_unavailable_value"


class DecodeError(ValueError):
    """A record that is not a Debezium event we can read; the message says why."""


@dataclass(frozen=True)
class DecodedRecord:
    kind: str  # change | tombstone | transaction | message
    op: str | None = None
    connector: str | None = None
    database: str | None = None
    schema: str | None = None
    table: str | None = None
    key: dict | None = None
    before: dict | None = None
    after: dict | None = None
    ts_ms: int | None = None
    lsn: int | str | None = None
    tx_id: str | int | None = None
    source: dict | None = None
    transaction: dict | None = None
    # columns whose value Debezium did not have (unchanged TOASTed values); silver keeps the old value
    unavailable_columns: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["unavailable_columns"] = list(self.unavailable_columns)
        return out


def _parse_json(raw: bytes | str | None, what: str) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(f"{what} is not valid JSON: {exc}") from exc


def _split_schema(document: Any) -> tuple[dict | None, Any]:
    """JsonConverter with schemas.enable=true wraps the value as {schema, payload}."""
    if isinstance(document, dict) and set(document) == {"schema", "payload"}:
        return document["schema"], document["payload"]
    return None, document


def _field_schema(schema: dict | None, name: str) -> dict | None:
    for f in (schema or {}).get("fields", []) or []:
        if f.get("field") == name:
            return f
    return None


def _strip_toast(row: dict | None) -> tuple[dict | None, tuple[str, ...]]:
    if row is None:
        return None, ()
    missing = tuple(k for k, v in row.items() if v == TOAST_PLACEHOLDER or v == [TOAST_PLACEHOLDER])
    if not missing:
        return row, ()
    return {k: v for k, v in row.items() if k not in missing}, missing


def _decode_key(key: bytes | str | None) -> dict | None:
    document = _parse_json(key, "key")
    schema, payload = _split_schema(document)
    if payload is None:
        return None
    if isinstance(payload, dict):
        try:
            return decode_struct(payload, schema)
        except LogicalTypeError as exc:
            raise DecodeError(f"key: {exc}") from exc
    # a primitive key (e.g. MongoDB's id string or a single-column key without struct)
    return {"id": payload}


def _lsn(source: dict) -> int | str | None:
    # PostgreSQL: lsn (int); MySQL: file/pos; SQL Server: change_lsn/commit_lsn (strings); Oracle: scn;
    # MongoDB: resume token. Keep what identifies the position for the connector at hand.
    for name in ("lsn", "change_lsn", "commit_lsn", "scn", "commit_scn"):
        if source.get(name) is not None:
            return source[name]
    if source.get("file") is not None and source.get("pos") is not None:
        return f"{source['file']}:{source['pos']}"
    if source.get("ord") is not None and source.get("ts_ms") is not None:
        return f"{source['ts_ms']}:{source['ord']}"
    return None


def _tx_id(payload: dict, source: dict) -> str | int | None:
    tx = payload.get("transaction")
    if isinstance(tx, dict) and tx.get("id") is not None:
        return tx["id"]
    for name in ("txId", "gtid", "txid", "lsid"):
        if source.get(name) is not None:
            return source[name]
    return None


def _decode_transaction(payload: dict) -> DecodedRecord:
    collections = payload.get("data_collections")
    return DecodedRecord(
        kind="transaction",
        ts_ms=payload.get("ts_ms"),
        tx_id=payload.get("id"),
        transaction={
            "status": payload["status"],
            "id": payload.get("id"),
            "event_count": payload.get("event_count"),
            "data_collections": collections,
        },
    )


def _decode_flattened(payload: dict, schema: dict | None, key: dict | None) -> DecodedRecord:
    """ExtractNewRecordState output: the row itself, with optional __op, __deleted, __source_* fields."""
    row = decode_struct(payload, schema)
    meta = {k: row.pop(k) for k in [k for k in row if k.startswith("__")]}
    deleted = str(meta.get("__deleted", "false")).lower() == "true"
    op = meta.get("__op") or ("d" if deleted else None)
    if op is not None and op not in OPS:
        raise DecodeError(f"unknown op {op!r} in flattened record")
    row, unavailable = _strip_toast(row)
    return DecodedRecord(
        kind="change",
        op=op,
        database=meta.get("__db") or meta.get("__source_db"),
        schema=meta.get("__schema") or meta.get("__source_schema"),
        table=meta.get("__table") or meta.get("__source_table"),
        key=key,
        before=row if deleted else None,
        after=None if deleted else row,
        ts_ms=meta.get("__ts_ms") or meta.get("__source_ts_ms"),
        lsn=meta.get("__lsn") or meta.get("__source_lsn"),
        tx_id=meta.get("__txId") or meta.get("__source_txId"),
        unavailable_columns=unavailable,
    )


def _decode_row(value: Any, schema: dict | None, name: str) -> dict | None:
    if isinstance(value, str):
        # MongoDB's after/patch/filter are extended-JSON strings: keep them as JSON
        parsed = _parse_json(value, name)
        return parsed if isinstance(parsed, dict) else {"value": parsed}
    if value is not None and not isinstance(value, dict):
        raise DecodeError(f"{name} must be an object or null, got {type(value).__name__}")
    try:
        return decode_struct(value, schema)
    except LogicalTypeError as exc:
        raise DecodeError(f"{name}: {exc}") from exc


def decode(value: bytes | str | None, key: bytes | str | None = None, topic: str | None = None) -> DecodedRecord:
    """Decode one Kafka record of a Debezium topic."""
    decoded_key = _decode_key(key)
    document = _parse_json(value, "value")
    schema, payload = _split_schema(document)
    if payload is None:
        return DecodedRecord(kind="tombstone", key=decoded_key)
    if not isinstance(payload, dict):
        raise DecodeError(f"value payload must be a JSON object, got {type(payload).__name__}")

    if "status" in payload and payload.get("status") in ("BEGIN", "END") and "op" not in payload:
        return _decode_transaction(payload)

    if "op" not in payload:
        if "source" in payload or "before" in payload or "after" in payload:
            raise DecodeError("change event has no 'op' field")
        if not payload:
            raise DecodeError("value is an empty object, not a change event")
        return _decode_flattened(payload, schema, decoded_key)

    op = payload["op"]
    if op not in OPS:
        raise DecodeError(f"unknown op {op!r} (expected one of c, u, d, r, t, m)")
    source = payload.get("source")
    if source is not None and not isinstance(source, dict):
        raise DecodeError("'source' must be an object")
    source = source or {}

    before = _decode_row(payload.get("before"), _field_schema(schema, "before"), "before")
    after_raw = payload.get("after", payload.get("patch"))
    after = _decode_row(after_raw, _field_schema(schema, "after"), "after")
    before, _ = _strip_toast(before)
    after, unavailable = _strip_toast(after)
    if op in ("c", "r") and after is None:
        raise DecodeError(f"op {op!r} without 'after'")
    if op == "d" and before is None and decoded_key is None:
        raise DecodeError("delete without 'before' and without a key: cannot tell which row")

    transaction = payload.get("transaction") if isinstance(payload.get("transaction"), dict) else None
    message = payload.get("message") if op == "m" else None
    return DecodedRecord(
        kind="message" if op == "m" else "change",
        op=op,
        connector=source.get("connector"),
        database=source.get("db"),
        schema=source.get("schema"),
        table=source.get("table") or source.get("collection"),
        key=decoded_key,
        before=before,
        after=after if op != "m" else message,
        ts_ms=payload.get("ts_ms") if payload.get("ts_ms") is not None else source.get("ts_ms"),
        lsn=_lsn(source),
        tx_id=_tx_id(payload, source),
        source=source or None,
        transaction=transaction,
        unavailable_columns=unavailable,
    )
