"""Debezium change events → decoded records. Pure functions: bytes in, dataclass out, no I/O.

Covers Debezium's documented record format for all its connectors: values with or without their
JsonConverter schema, tombstones, op c/u/d/r/t/m, transaction metadata (BEGIN/END), the flattened rows
of ExtractNewRecordState (`__op`, `__deleted`, `__source_*`), MongoDB's JSON-string documents, logical
types (see logical_types.py) and the TOAST placeholder for values Debezium did not have.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, Callable

import orjson

from pipelines.cdc.logical_types import LogicalTypeError, field_schemas, struct_decoder

OPS = ("c", "u", "d", "r", "t", "m")
# bronze keeps source_ts in microseconds in an int64
_MAX_MILLIS = (2**63 - 1) // 1000
TOAST_PLACEHOLDER = "__debezium_unavailable_value"
# The same placeholder as it appears in binary (base64) and array columns
_TOAST_FORMS = (TOAST_PLACEHOLDER, base64.b64encode(TOAST_PLACEHOLDER.encode()).decode(), [TOAST_PLACEHOLDER])
_TOAST_BYTES = tuple(form.encode() for form in _TOAST_FORMS[:2])

# CLI contract: exactly these keys, in this order
CONTRACT_KEYS = ("kind", "op", "connector", "database", "schema", "table", "key", "before", "after",
                 "ts_ms", "lsn", "tx_id", "source", "transaction")


class DecodeError(ValueError):
    """A record that is not a Debezium event we can read; the message says why."""


# slots, not frozen: one is built per Kafka record, and a frozen dataclass's __init__ costs about 2 µs of
# the ~36 µs an event takes (bench/ingest_cdc.py); nothing mutates or hashes a record
@dataclass(slots=True)
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

    def __post_init__(self) -> None:
        """What bronze stores in typed columns must have its type: a record that says otherwise is
        quarantined with the reason, not left to fail the whole batch when it is written."""
        ts_ms = self.ts_ms
        if ts_ms is not None and (ts_ms.__class__ is not int or not -_MAX_MILLIS <= ts_ms <= _MAX_MILLIS):
            raise DecodeError(f"ts_ms must be an integer number of milliseconds since the epoch, got {ts_ms!r}")
        for what, value in (("connector", self.connector), ("database", self.database), ("schema", self.schema),
                            ("table", self.table)):
            if value is not None and value.__class__ is not str:
                raise DecodeError(f"source {what} must be a string, got {value!r}")

    def contract(self) -> dict[str, Any]:
        """The `lakehouse cdc decode` output object."""
        values = asdict(self)
        return {k: values[k] for k in CONTRACT_KEYS}


def _parse_json(raw: bytes | str | None, what: str) -> Any:
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass  # json below names the problem (and accepts what orjson does not: NaN, integers beyond 64 bits)
    try:
        # JsonConverter writes UTF-8; json.loads(bytes) would guess UTF-16/32 from leading NUL bytes
        return json.loads(raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw)
    except UnicodeDecodeError as exc:
        raise DecodeError(f"{what} is not UTF-8 text (binary data?): {exc.reason} at byte {exc.start}") from exc
    except json.JSONDecodeError as exc:
        raise DecodeError(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except RecursionError as exc:  # orjson stops at 1,024 levels; json at Python's recursion limit
        raise DecodeError(f"{what} is JSON nested too deeply to decode") from exc


def _split_schema(document: Any) -> tuple[dict | None, Any]:
    """JsonConverter with schemas.enable=true wraps a value as {schema, payload}, always both keys."""
    if not isinstance(document, dict):
        return None, document
    keys = set(document)
    if keys == {"schema", "payload"}:
        schema, payload = document["schema"], document["payload"]
        if payload is None and isinstance(schema, dict) and schema.get("optional") is False:
            raise DecodeError("JsonConverter envelope with a null payload under a required schema")
        return (schema if isinstance(schema, dict) else None), payload
    if keys in ({"schema"}, {"payload"}):
        missing = ({"schema", "payload"} - keys).pop()
        raise DecodeError(f"JsonConverter envelope without its '{missing}'")
    return None, document


def _strip_toast(row: dict | None) -> tuple[dict | None, tuple[str, ...]]:
    if row is None:
        return None, ()
    missing = tuple(k for k, v in row.items() if any(v == form for form in _TOAST_FORMS))
    if not missing:
        return row, ()
    return {k: v for k, v in row.items() if k not in missing}, missing


def _may_hold_toast(raw: bytes | str, start: int) -> bool:
    """A cheap byte search that spares checking every value of the rows that cannot hold a placeholder."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    return raw.find(_TOAST_BYTES[0], start) != -1 or raw.find(_TOAST_BYTES[1], start) != -1


RowDecoder = Callable[[dict | None], dict | None]


@dataclass(frozen=True)
class Envelope:
    """A JsonConverter schema, compiled once: its row decoders, and (when the value's bytes start with
    it) the exact byte prefix `{"schema":...,"payload":` that every record under this schema shares."""

    schema: dict | None
    prefix: bytes | None = None
    rows: dict[str, RowDecoder] = field(default_factory=dict, compare=False)

    @cached_property
    def id(self) -> str | None:
        """Content hash of the prefix: names the schema in bronze (`value_schema_id`)."""
        return None if self.prefix is None else hashlib.sha256(self.prefix).hexdigest()

    def row_decoder(self, name: str | None) -> RowDecoder:
        """Decoder of the struct field `name` (None: the whole schema is the row, as for flattened records)."""
        if name not in self.rows:
            self.rows[name] = struct_decoder(self.schema if name is None else field_schemas(self.schema).get(name))
        return self.rows[name]

    def payload_bytes(self, raw: bytes) -> bytes:
        """The record's payload exactly as it arrived: `raw` without this envelope around it."""
        return raw[len(self.prefix) : -1] if self.prefix is not None else raw


_NO_SCHEMA = Envelope(schema=None)
_PAYLOAD_KEY = b',"payload":'


def _learn_prefix(raw: bytes, schema: dict) -> bytes | None:
    """The bytes before the payload, if `raw` is `{"schema":S,"payload":P}` with S first; verified by
    parsing the prefix with a null payload, so a `,"payload":` inside the schema cannot fool it."""
    at = raw.find(_PAYLOAD_KEY)
    while at != -1:
        prefix = raw[: at + len(_PAYLOAD_KEY)]
        try:
            if orjson.loads(prefix + b"null}") == {"schema": schema, "payload": None}:
                return prefix
        except orjson.JSONDecodeError:
            pass
        at = raw.find(_PAYLOAD_KEY, at + 1)
    return None


class _EnvelopeCache:
    """Splits JsonConverter documents into (envelope, payload). Records of one topic share their schema,
    so after the first one a record costs a prefix comparison and a parse of its payload only."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.last: dict[str | None, Envelope] = {}
        # per topic, (envelope, a prefix object found equal to its prefix): the records of one chunk share
        # one prefix object, so only the first pays for comparing its ~6 KB
        self._same: dict[str | None, tuple[Envelope, bytes]] = {}

    def known(self, topic: str | None, prefix: bytes) -> Envelope | None:
        """The topic's current envelope, if `prefix` is its prefix."""
        envelope = self.last.get(topic)
        if envelope is None:
            return None
        same = self._same.get(topic)
        if same is not None and same[0] is envelope and same[1] is prefix:
            return envelope
        if envelope.prefix == prefix:
            self._same[topic] = (envelope, prefix)
            return envelope
        return None

    def split(self, raw: bytes | str | None, topic: str | None) -> tuple[Envelope, Any]:
        known = self.last.get(topic)
        if known is not None and isinstance(raw, bytes) and raw.startswith(known.prefix) and raw.endswith(b"}"):
            try:
                payload = orjson.loads(memoryview(raw)[len(known.prefix) : -1])
            except orjson.JSONDecodeError:
                payload = None  # the full parse below reports it
            if payload is not None:
                return known, payload
        schema, payload = _split_schema(_parse_json(raw, self.what))
        if schema is None:
            return _NO_SCHEMA, payload
        framed = isinstance(raw, bytes) and raw.endswith(b"}")  # prefix + payload + "}", nothing after
        if known is not None and known.schema == schema and framed and raw.startswith(known.prefix):
            # (the same schema written differently, e.g. with its keys in another order, is another
            # envelope: value = prefix + raw payload + "}" must hold for the bytes that arrived)
            return known, payload
        prefix = _learn_prefix(raw, schema) if framed else None
        envelope = Envelope(schema=schema, prefix=prefix)
        if prefix is not None:
            self.last[topic] = envelope
        return envelope, payload


def _decode_row(value: Any, decoder: RowDecoder, name: str, may_hold_toast: bool) -> tuple[dict | None, tuple[str, ...]]:
    """A before/after image: placeholders removed first (they are not data, whatever the column type),
    then logical types decoded."""
    if isinstance(value, str):
        # MongoDB sends documents as extended-JSON strings: keep them as JSON
        parsed = _parse_json(value, name)
        if not isinstance(parsed, dict):
            raise DecodeError(f"{name} is a JSON string but not a document")
        return parsed, ()
    if value is not None and not isinstance(value, dict):
        raise DecodeError(f"{name} must be an object or null, got {type(value).__name__}")
    row, unavailable = _strip_toast(value) if may_hold_toast else (value, ())
    try:
        return decoder(row), unavailable
    except LogicalTypeError as exc:
        raise DecodeError(f"{name}: {exc}") from exc


def _connector(source: dict) -> str | None:
    """Old Debezium versions did not name the connector in `source`; its fields tell."""
    if source.get("connector"):
        return source["connector"]
    if "file" in source and "pos" in source:
        return "mysql"
    if "change_lsn" in source or "commit_lsn" in source:
        return "sqlserver"
    if "scn" in source:
        return "oracle"
    if "rs" in source or "ord" in source:
        return "mongodb"
    if "lsn" in source or "txId" in source:
        return "postgresql"
    return None


def _lsn(source: dict) -> int | str | None:
    """The source position that orders changes, in the connector's own form: Postgres `lsn`, SQL
    Server `change_lsn`, Oracle `scn`, MySQL `file:pos`, MongoDB `ts_ms:ord`."""
    for name in ("lsn", "change_lsn", "scn", "commit_lsn", "commit_scn"):
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


def _blank_to_none(value: Any) -> Any:
    return None if value == "" else value


def _decode_transaction(payload: dict) -> DecodedRecord:
    return DecodedRecord(
        kind="transaction",
        ts_ms=payload.get("ts_ms"),
        tx_id=payload.get("id"),
        transaction={
            "status": payload["status"],
            "id": payload.get("id"),
            "event_count": payload.get("event_count"),
            "data_collections": payload.get("data_collections"),
        },
    )


def _decode_flattened(payload: dict, envelope: Envelope, key: dict | None, may_hold_toast: bool) -> DecodedRecord:
    """ExtractNewRecordState's output: the row itself plus optional `__`-prefixed metadata fields.
    Without `__op`, a row is an upsert of its key (the SMT drops deletes or marks them `__deleted`), so
    it is reported as op "u": applying it replaces the row whether or not it existed."""
    meta = {k: v for k, v in payload.items() if k.startswith("__")}
    row, unavailable = _decode_row(
        {k: v for k, v in payload.items() if not k.startswith("__")}, envelope.row_decoder(None), "row", may_hold_toast
    )
    deleted = str(meta.get("__deleted", "false")).lower() == "true"
    op = meta.get("__op") or ("d" if deleted else "u")
    if op not in OPS:
        raise DecodeError(f"unknown op {op!r} in flattened record (__op)")
    if op == "d" and not deleted:
        deleted = True

    def meta_of(*names: str) -> Any:
        return next((meta[n] for n in names if meta.get(n) is not None), None)

    return DecodedRecord(
        kind="change",
        op=op,
        connector=meta_of("__source_connector", "__connector"),
        database=meta_of("__source_db", "__db"),
        schema=meta_of("__source_schema", "__schema"),
        table=meta_of("__source_table", "__table"),
        key=key,
        before=row if deleted else None,
        after=None if deleted else row,
        ts_ms=meta_of("__ts_ms", "__source_ts_ms"),
        lsn=meta_of("__source_lsn", "__lsn", "__source_change_lsn", "__source_scn"),
        tx_id=meta_of("__source_txId", "__txId", "__transaction_id"),
        unavailable_columns=unavailable,
    )


def _is_transaction_event(payload: dict) -> bool:
    return payload.get("status") in ("BEGIN", "END") and "op" not in payload and "id" in payload


class Decoder:
    """Decodes the records of Debezium topics, remembering each topic's schemas between records.

    `allow_flattened=False` is for topics known to carry full change events (no ExtractNewRecordState):
    there an object without `op` is an error, not a row."""

    def __init__(self, *, allow_flattened: bool = True) -> None:
        self.allow_flattened = allow_flattened
        self._keys = _EnvelopeCache("key")
        self._values = _EnvelopeCache("value")

    def decode(self, value: bytes | str | None, key: bytes | str | None = None, topic: str | None = None) -> DecodedRecord:
        return self.decode_with_envelope(value, key, topic)[0]

    def decode_with_envelope(
        self, value: bytes | str | None, key: bytes | str | None = None, topic: str | None = None
    ) -> tuple[DecodedRecord, Envelope]:
        """The record, and the value's envelope (its schema and byte prefix). Raises DecodeError."""
        decoded_key = self._decode_key(key, topic)
        envelope, payload = self._values.split(value, topic)
        may_hold_toast = value is not None and _may_hold_toast(value, len(envelope.prefix or b""))
        return self._decode_payload(payload, envelope, decoded_key, may_hold_toast), envelope

    def decode_payload(
        self, payload: bytes, prefix: bytes, key: bytes | str | None = None, topic: str | None = None
    ) -> tuple[DecodedRecord, Envelope]:
        """What decode_with_envelope(prefix + payload + b"}", key, topic) returns, for a value whose
        envelope prefix the caller has cut off (the CDC ingest does, to send its decode workers less),
        without putting the value together again: on this machine copying 8 KB costs as much as parsing
        the payload. The envelope returned has this prefix unless the whole value is no envelope under it
        (an extra top-level key, say)."""
        envelope = self._values.known(topic, prefix)
        if envelope is not None:
            try:
                parsed = orjson.loads(payload)
            except orjson.JSONDecodeError:
                parsed = None  # the whole value's decoding below reports it
            if parsed is not None:
                decoded_key = self._decode_key(key, topic)
                return self._decode_payload(parsed, envelope, decoded_key, _may_hold_toast(payload, 0)), envelope
        return self.decode_with_envelope(prefix + payload + b"}", key, topic)

    def _decode_key(self, key: bytes | str | None, topic: str | None) -> dict | None:
        envelope, payload = self._keys.split(key, topic)
        if payload is None:
            return None
        if isinstance(payload, dict):
            try:
                return envelope.row_decoder(None)(payload)
            except LogicalTypeError as exc:
                raise DecodeError(f"key: {exc}") from exc
        # a primitive key, e.g. a single-column key without a struct
        return {"id": payload}

    def _decode_payload(self, payload: Any, envelope: Envelope, decoded_key: dict | None, may_hold_toast: bool) -> DecodedRecord:
        if payload is None:
            # a null record value, or {"schema": null, "payload": null} as some tools render it
            return DecodedRecord(kind="tombstone", key=decoded_key)
        if not isinstance(payload, dict):
            raise DecodeError(f"value must be a JSON object, got {type(payload).__name__}")
        if not payload:
            raise DecodeError("value is an empty JSON object, not a Debezium event")
        if _is_transaction_event(payload):
            return _decode_transaction(payload)
        if "op" not in payload:
            if {"before", "after", "source"} & set(payload) or not self.allow_flattened:
                raise DecodeError("change event has no 'op' field")
            return _decode_flattened(payload, envelope, decoded_key, may_hold_toast)

        op = payload["op"]
        if op not in OPS:
            raise DecodeError(f"unknown op {op!r} (expected one of {', '.join(OPS)})")
        source = payload.get("source")
        if source is not None and not isinstance(source, dict):
            raise DecodeError("'source' must be an object")
        source = source or {}
        before, _ = _decode_row(payload.get("before"), envelope.row_decoder("before"), "before", may_hold_toast)
        after_field = "after" if "after" in payload or "patch" not in payload else "patch"
        after, unavailable = _decode_row(payload.get(after_field), envelope.row_decoder(after_field), "after", may_hold_toast)
        if op in ("c", "r") and after is None:
            raise DecodeError(f"op {op!r} without an 'after' row")
        if op == "u" and after is None and "updateDescription" not in payload:
            raise DecodeError("op 'u' without an 'after' row")
        if op == "d" and before is None and decoded_key is None:
            raise DecodeError("delete without 'before' and without a key: cannot tell which row")
        if op == "m" and not isinstance(payload.get("message"), dict):
            raise DecodeError("op 'm' without a 'message' object")

        transaction = payload.get("transaction") if isinstance(payload.get("transaction"), dict) else None
        return DecodedRecord(
            kind="message" if op == "m" else "change",
            op=op,
            connector=_connector(source),
            database=_blank_to_none(source.get("db")),
            schema=_blank_to_none(source.get("schema")),
            table=_blank_to_none(source.get("table") or source.get("collection")),
            key=decoded_key,
            before=before,
            after=payload["message"] if op == "m" else after,
            ts_ms=payload.get("ts_ms") if payload.get("ts_ms") is not None else source.get("ts_ms"),
            lsn=_lsn(source),
            tx_id=_tx_id(payload, source),
            source=source or None,
            transaction=transaction,
            unavailable_columns=unavailable,
        )


def decode(
    value: bytes | str | None,
    key: bytes | str | None = None,
    topic: str | None = None,
    *,
    allow_flattened: bool = True,
) -> DecodedRecord:
    """Decode one Kafka record of a Debezium topic. Raises DecodeError for anything else."""
    return Decoder(allow_flattened=allow_flattened).decode(value, key, topic)
