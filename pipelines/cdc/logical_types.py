"""Decoding of Kafka Connect and Debezium logical types into exact, JSON-friendly values.

Decimals become strings with their exact digits (a float would round money), dates `YYYY-MM-DD`,
times `HH:MM:SS[.ffffff]`, timestamps ISO-8601 with a timezone. Types without a decoder pass through.
"""

from __future__ import annotations

import binascii
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from functools import lru_cache
from typing import Any, Callable

EPOCH_DATE = date(1970, 1, 1)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class LogicalTypeError(ValueError):
    pass


def _unscaled_bytes_to_decimal(raw: Any, scale: int) -> str:
    if isinstance(raw, str):
        return _base64_decimal(raw, scale)
    if not isinstance(raw, (bytes, bytearray)):
        raise LogicalTypeError(f"decimal value must be base64 bytes, got {type(raw).__name__}")
    return _unscaled_to_text(int.from_bytes(raw, "big", signed=True), scale)


# money repeats (prices, fees, common totals): a bounded memo saves most of the work on real streams
@lru_cache(maxsize=65_536)
def _base64_decimal(raw: str, scale: int) -> str:
    try:
        # what base64.b64decode(validate=True) does, without its wrapper (a third of the time)
        unscaled = binascii.a2b_base64(raw, strict_mode=True)
    except ValueError as exc:
        raise LogicalTypeError(f"decimal bytes are not base64: {raw!r}") from exc
    return _unscaled_to_text(int.from_bytes(unscaled, "big", signed=True), scale)


def _unscaled_to_text(unscaled: int, scale: int) -> str:
    """The exact digits with the point `scale` places from the right (never exponent notation), as
    format(Decimal((sign, digits, -scale)), "f") writes them; text, not arithmetic, so no precision or
    rounding applies. Hot: most money values in a stream are distinct, so the memo above misses often."""
    digits = str(abs(unscaled))
    if scale <= 0:
        return format(Decimal((int(unscaled < 0), tuple(map(int, digits)), -scale)), "f")
    digits = digits.rjust(scale + 1, "0")
    return f"{'-' if unscaled < 0 else ''}{digits[:-scale]}.{digits[-scale:]}"


def decode_decimal(value: Any, schema: dict) -> str:
    # JsonConverter writes Connect Decimal as base64 of the unscaled two's-complement integer; a JSON
    # number only appears when a custom converter already turned it into one.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(Decimal(str(value)))
    return _unscaled_bytes_to_decimal(value, _decimal_scale(schema))


def _decimal_scale(schema: dict) -> int:
    return int((schema.get("parameters") or {}).get("scale", 0))


def decode_variable_scale_decimal(value: Any, schema: dict) -> str:
    if not isinstance(value, dict) or "scale" not in value or "value" not in value:
        raise LogicalTypeError(f"VariableScaleDecimal must be {{scale, value}}, got {value!r}")
    return _unscaled_bytes_to_decimal(value["value"], int(value["scale"]))


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise LogicalTypeError(f"{what} must be an integer, got {value!r}")
    return value


def decode_date(value: Any, schema: dict) -> str:
    return (EPOCH_DATE + timedelta(days=_as_int(value, "Date"))).isoformat()


def _time_from_micros(micros: int) -> str:
    micros %= 86_400_000_000
    seconds, micro = divmod(micros, 1_000_000)
    t = time(seconds // 3600, seconds // 60 % 60, seconds % 60, micro)
    return t.isoformat()


def decode_time_millis(value: Any, schema: dict) -> str:
    return _time_from_micros(_as_int(value, "Time") * 1000)


def decode_micro_time(value: Any, schema: dict) -> str:
    return _time_from_micros(_as_int(value, "MicroTime"))


def decode_nano_time(value: Any, schema: dict) -> str:
    return _time_from_micros(_as_int(value, "NanoTime") // 1000)


def _timestamp_from_micros(micros: int) -> str:
    return (EPOCH + timedelta(microseconds=micros)).isoformat()


def decode_timestamp_millis(value: Any, schema: dict) -> str:
    return _timestamp_from_micros(_as_int(value, "Timestamp") * 1000)


def decode_micro_timestamp(value: Any, schema: dict) -> str:
    return _timestamp_from_micros(_as_int(value, "MicroTimestamp"))


def decode_nano_timestamp(value: Any, schema: dict) -> str:
    nanos = _as_int(value, "NanoTimestamp")
    base = _timestamp_from_micros(nanos // 1000)
    rest = nanos % 1000
    if not rest:
        return base
    # keep nanosecond digits that datetime cannot hold
    stamp, _, offset = base.rpartition("+")
    if "." not in stamp:
        stamp += ".000000"
    return f"{stamp}{rest:03d}+{offset}"


def decode_zoned(value: Any, schema: dict) -> str:
    if not isinstance(value, str):
        raise LogicalTypeError(f"zoned time/timestamp must be an ISO string, got {value!r}")
    return value


DECODERS: dict[str, Callable[[Any, dict], Any]] = {
    "org.apache.kafka.connect.data.Decimal": decode_decimal,
    "io.debezium.data.VariableScaleDecimal": decode_variable_scale_decimal,
    "org.apache.kafka.connect.data.Date": decode_date,
    "io.debezium.time.Date": decode_date,
    "org.apache.kafka.connect.data.Time": decode_time_millis,
    "io.debezium.time.Time": decode_time_millis,
    "io.debezium.time.MicroTime": decode_micro_time,
    "io.debezium.time.NanoTime": decode_nano_time,
    "org.apache.kafka.connect.data.Timestamp": decode_timestamp_millis,
    "io.debezium.time.Timestamp": decode_timestamp_millis,
    "io.debezium.time.MicroTimestamp": decode_micro_timestamp,
    "io.debezium.time.NanoTimestamp": decode_nano_timestamp,
    "io.debezium.time.ZonedTimestamp": decode_zoned,
    "io.debezium.time.ZonedTime": decode_zoned,
}


_INTEGER_TYPES = {"int8", "int16", "int32", "int64"}


def _coerce_primitive(value: Any, connect_type: str) -> Any:
    """Some producers (and Debezium's own docs) quote numbers and booleans; the schema says what they are."""
    if not isinstance(value, str):
        return value
    if connect_type in _INTEGER_TYPES:
        try:
            return int(value)
        except ValueError:
            raise LogicalTypeError(f"{connect_type} field holds {value!r}") from None
    if connect_type == "boolean" and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def field_schemas(schema: dict | None) -> dict[str, dict]:
    """Field name → field schema of a struct schema. Accepts the JsonConverter form
    ({"field": name, "type": ...}) and the form in Debezium's docs ({"name": name, "schema": {...}})."""
    out = {}
    for f in (schema or {}).get("fields", []) or []:
        name = f.get("field") if "field" in f else f.get("name")
        out[name] = {**f, **f["schema"]} if isinstance(f.get("schema"), dict) else f
    return out


class _Never:
    """No JSON value is of this class: a field typed with it always goes through its decoder."""


def field_decoder(schema: dict | None) -> tuple[type, Callable[[Any], Any]] | None:
    """How to decode a non-null value of this field schema: (the class of values already decoded, which
    skip the call; the decoder for the others). None when every value passes through."""
    if not schema:
        return None
    decoder = DECODERS.get(schema.get("name") or "")
    if decoder is decode_decimal:
        # the common case first: base64 text, straight to the memo
        scale = _decimal_scale(schema)
        return _Never, lambda value: _base64_decimal(value, scale) if value.__class__ is str else decoder(value, schema)
    if decoder is decode_zoned:
        # already ISO text: only a value of another type (an error) needs the call
        return str, lambda value: decoder(value, schema)
    if decoder is not None:
        return _Never, lambda value: decoder(value, schema)
    connect_type = str(schema.get("type", "")).lower()
    if connect_type == "struct":
        row = struct_decoder(schema)
        return _Never, lambda value: row(value) if isinstance(value, dict) else value
    if connect_type == "array":
        item = field_decoder(schema.get("items"))
        if item is None:
            return None
        passes, decode = item
        return _Never, lambda value: (
            [v if v is None or v.__class__ is passes else decode(v) for v in value] if isinstance(value, list) else value
        )
    if connect_type in _INTEGER_TYPES:
        return int, lambda value: _coerce_primitive(value, connect_type)
    if connect_type == "boolean":
        return bool, lambda value: _coerce_primitive(value, connect_type)
    return None


def struct_decoder(schema: dict | None) -> Callable[[dict | None], dict | None]:
    """A row decoder compiled once per schema: only the fields that need decoding are visited, and
    their values that are already decoded (ISO text, integers) cost a class check, not a call.
    It decodes the row in place (rows come fresh from the JSON parser) and returns it."""
    converters = [(name, *d) for name, f in field_schemas(schema).items() if (d := field_decoder(f)) is not None]

    def decode_row(value: dict | None) -> dict | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise LogicalTypeError(f"expected a row object, got {type(value).__name__}")
        for name, passes, decoder in converters:
            v = value.get(name)
            if v is not None and v.__class__ is not passes:
                value[name] = decoder(v)
        return value

    return decode_row
