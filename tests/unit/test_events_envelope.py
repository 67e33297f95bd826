"""The event envelope validator: one JSON line → a bronze row or the reason it is quarantined (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from pipelines.events.envelope import CLOUDEVENTS, KNOWN_EVENT_TYPES, PLATFORM, EventRow, LineError, parse_line
from pipelines.workload.model import EVENT_TYPES, BusinessEvent

EVENT_ID = "6f1c2a0e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
CORRELATION = "11111111-2222-4333-8444-555555555555"
USER = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
SESSION = "99999999-8888-4777-8666-555555555555"


def platform(**overrides) -> dict:
    event = {
        "eventId": EVENT_ID,
        "eventType": "order.created",
        "eventSource": "order-service",
        "timestamp": "2026-11-02T10:15:30.250Z",
        "version": "1.0",
        "data": {"payload": {"order_id": "o-1", "total_amount": "111.23", "items": [1, 2]},
                 "metadata": {"runId": "r", "step": "order.place"}},
        "correlationId": CORRELATION,
        "userId": USER,
        "sessionId": SESSION,
        "environment": "local",
        "region": "us-east-1",
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not _DROP}


def cloudevent(**overrides) -> dict:
    event = {
        "specversion": "1.0",
        "type": "com.shop.payment.processed",
        "source": "/services/payment",
        "id": EVENT_ID,
        "time": "2026-11-02T10:15:30+02:00",
        "subject": "payment/p-1",
        "data": {
            "entityId": "p-1",
            "entityType": "payment",
            "action": "processed",
            "payload": {"amount": "10.00"},
            "metadata": {"correlationId": CORRELATION, "causationId": "c-1", "userId": USER},
        },
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not _DROP}


_DROP = object()


def line(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def micros(ts: datetime) -> int:
    return (ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def test_known_event_types_are_the_workloads_list():
    assert KNOWN_EVENT_TYPES == set(EVENT_TYPES)


def test_platform_event_maps_every_column():
    row = parse_line(line(platform()))
    assert isinstance(row, EventRow)
    assert row.event_id == EVENT_ID
    assert row.event_type == "order.created"
    assert row.event_source == "order-service"
    assert row.event_ts_us == micros(datetime(2026, 11, 2, 10, 15, 30, 250_000, tzinfo=UTC))
    assert row.event_ts == datetime(2026, 11, 2, 10, 15, 30, 250_000, tzinfo=UTC)
    assert row.version == "1.0"
    assert (row.correlation_id, row.user_id, row.session_id) == (CORRELATION, USER, SESSION)
    assert json.loads(row.payload) == {"order_id": "o-1", "total_amount": "111.23", "items": [1, 2]}
    assert json.loads(row.metadata) == {"runId": "r", "step": "order.place"}
    assert (row.envelope, row.environment, row.region) == (PLATFORM, "local", "us-east-1")


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_event_the_workload_writes_is_valid(event_type):
    event = BusinessEvent(
        event_id=__import__("uuid").UUID(EVENT_ID), event_type=event_type, source="svc",
        timestamp=datetime(2026, 11, 3, 1, 2, 3, 456_000, tzinfo=UTC), payload={"a": 1}, metadata={"step": "s"},
        correlation_id=__import__("uuid").UUID(CORRELATION), user_id=None, session_id=None,
    )
    row = parse_line(json.dumps(event.to_json()).encode())
    assert isinstance(row, EventRow), row
    assert row.event_type == event_type
    assert row.event_ts_us == micros(datetime(2026, 11, 3, 1, 2, 3, 456_000, tzinfo=UTC))
    assert row.user_id is None and row.session_id is None


def test_cloudevent_maps_to_the_same_columns():
    row = parse_line(line(cloudevent()))
    assert isinstance(row, EventRow), row
    assert row.envelope == CLOUDEVENTS
    assert row.event_id == EVENT_ID
    assert row.event_type == "payment.processed"  # reverse-DNS prefix dropped
    assert row.event_source == "/services/payment"
    assert row.event_ts_us == micros(datetime(2026, 11, 2, 8, 15, 30, tzinfo=UTC))
    assert row.correlation_id == CORRELATION and row.user_id == USER and row.session_id is None
    assert json.loads(row.payload) == {"amount": "10.00"}
    assert json.loads(row.metadata) == {"correlationId": CORRELATION, "causationId": "c-1", "userId": USER}


def test_cloudevent_with_a_plain_known_type():
    row = parse_line(line(cloudevent(type="user.updated")))
    assert isinstance(row, EventRow) and row.event_type == "user.updated"


def test_uppercase_uuids_are_accepted_and_stored_lowercase():
    row = parse_line(line(platform(eventId=EVENT_ID.upper())))
    assert row.event_id == EVENT_ID


def test_payload_text_keeps_key_order_and_exact_decimal_strings():
    payload = {"z": 1, "a": "0.10", "m": {"y": None, "b": 1.5}}
    row = parse_line(line(platform(data={"payload": payload})))
    assert row.payload == json.dumps(payload, separators=(",", ":"))
    assert row.metadata is None


@pytest.mark.parametrize("field", ["eventId", "eventType", "timestamp", "data"])
def test_missing_required_platform_field(field):
    result = parse_line(line(platform(**{field: _DROP})))
    assert result == LineError(f"missing required field {field}")


@pytest.mark.parametrize("field", ["eventId", "eventType", "timestamp", "data"])
def test_null_required_field_counts_as_missing(field):
    assert parse_line(line(platform(**{field: None}))) == LineError(f"missing required field {field}")


@pytest.mark.parametrize("field", ["id", "type", "time", "data", "source"])
def test_missing_required_cloudevents_field(field):
    assert parse_line(line(cloudevent(**{field: _DROP}))) == LineError(f"missing required field {field}")


@pytest.mark.parametrize(
    "field,value",
    [("eventId", "not-a-uuid"), ("eventId", 12), ("eventId", EVENT_ID + "0"), ("correlationId", "x"),
     ("userId", "123"), ("sessionId", ["a"])],
)
def test_ids_must_be_uuids(field, value):
    result = parse_line(line(platform(**{field: value})))
    assert isinstance(result, LineError) and result.reason.startswith(f"{field} is not a UUID")


def test_cloudevents_metadata_ids_must_be_uuids():
    event = cloudevent()
    event["data"]["metadata"]["userId"] = "bob"
    assert parse_line(line(event)).reason.startswith("data.metadata.userId is not a UUID")


@pytest.mark.parametrize("value", ["yesterday", "2026-13-01T00:00:00Z", "2026-11-02", 1767225600, "2026/11/02 10:00Z"])
def test_timestamp_must_be_iso_8601(value):
    result = parse_line(line(platform(timestamp=value)))
    assert isinstance(result, LineError) and "timestamp" in result.reason


def test_timestamp_without_offset_is_rejected():
    result = parse_line(line(platform(timestamp="2026-11-02T10:15:30")))
    assert isinstance(result, LineError) and "no UTC offset" in result.reason


@pytest.mark.parametrize(
    "value,expected",
    [
        ("2026-11-02T10:15:30Z", datetime(2026, 11, 2, 10, 15, 30, tzinfo=UTC)),
        ("2026-11-02T10:15:30.123456+00:00", datetime(2026, 11, 2, 10, 15, 30, 123_456, tzinfo=UTC)),
        ("2026-11-02T00:30:00-05:30", datetime(2026, 11, 2, 6, 0, tzinfo=UTC)),
        ("2026-11-02 10:15:30.1Z", datetime(2026, 11, 2, 10, 15, 30, 100_000, tzinfo=UTC)),
    ],
)
def test_timestamps_are_stored_as_utc_instants(value, expected):
    assert parse_line(line(platform(timestamp=value))).event_ts_us == micros(expected)


def test_unknown_event_type():
    assert parse_line(line(platform(eventType="order.teleported"))) == LineError(
        "unknown event type eventType='order.teleported'"
    )


def test_platform_types_take_no_prefix():
    assert isinstance(parse_line(line(platform(eventType="com.shop.order.created"))), LineError)


def test_cloudevents_unknown_type():
    assert parse_line(line(cloudevent(type="com.shop.order.teleported"))).reason.startswith("unknown event type")


def test_cloudevents_other_specversion():
    assert "specversion" in parse_line(line(cloudevent(specversion="0.3"))).reason


def test_data_must_be_an_object():
    assert parse_line(line(platform(data="hello"))).reason.startswith("data is not an object")


def test_optional_text_fields_must_be_strings():
    assert parse_line(line(platform(eventSource=5))).reason.startswith("eventSource is not a string")


def test_not_json():
    result = parse_line(b"{this is not json")
    assert isinstance(result, LineError) and result.reason.startswith("not valid JSON")


def test_truncated_last_line_says_so():
    raw = line(platform())[:-20]
    assert parse_line(raw, unterminated=True).reason.startswith("truncated last line")
    assert parse_line(raw).reason.startswith("not valid JSON")


def test_complete_last_line_without_newline_is_fine():
    assert isinstance(parse_line(line(platform()), unterminated=True), EventRow)


@pytest.mark.parametrize("raw", [b"[1,2]", b'"text"', b"42", b"null"])
def test_not_an_object(raw):
    assert parse_line(raw).reason.startswith("not a JSON object")


def test_not_utf8():
    result = parse_line(b'{"eventId":"\xff\xfe"}')
    assert isinstance(result, LineError) and "UTF-8" in result.reason


def test_nan_is_not_json():
    raw = line(platform()).replace(b'"items":[1,2]', b'"items":NaN')
    assert parse_line(raw).reason.startswith("not valid JSON")


def test_integers_beyond_64_bits_are_valid_json():
    raw = line(platform(data={"payload": {"big": 10**30}}))
    row = parse_line(raw)
    assert isinstance(row, EventRow) and json.loads(row.payload) == {"big": 10**30}


def test_lone_surrogate_in_payload_is_kept_escaped():
    raw = line(platform()).replace(b'"o-1"', b'"\\ud800"')
    row = parse_line(raw)
    assert isinstance(row, EventRow) and "\\ud800" in row.payload


def test_lone_surrogate_in_a_column_is_rejected():
    raw = line(platform()).replace(b'"order-service"', b'"\\ud800"')
    assert "surrogate" in parse_line(raw).reason


@pytest.mark.parametrize("number", [-9223372036854775809, -9999999999999999999, 18446744073709551616, -(10**25)])
def test_integers_just_beyond_64_bits_stay_exact(number):
    row = parse_line(line(platform(data={"payload": {"n": number}})))
    assert isinstance(row, EventRow) and row.payload == f'{{"n":{number}}}'


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"1" * 20 + b".5e400"])
def test_a_number_beyond_a_double_is_rejected_not_stored_as_infinity(number):
    raw = line(platform()).replace(b'"items":[1,2]', b'"items":' + number)
    result = parse_line(raw)
    assert isinstance(result, LineError) and "beyond the range of a double" in result.reason


@pytest.mark.parametrize("depth", [300, 900])
def test_deeply_nested_payload_is_kept(depth):
    nested = "[" * depth + "]" * depth
    raw = line(platform()).replace(b"[1,2]", nested.encode())
    row = parse_line(raw)
    assert isinstance(row, EventRow) and json.loads(row.payload)["items"] == json.loads(nested)


def test_payload_nested_beyond_what_python_parses_is_a_line_error():
    raw = line(platform()).replace(b"[1,2]", b"[" * 5000 + b"]" * 5000)
    result = parse_line(raw)
    assert isinstance(result, LineError) and "nested too deeply" in result.reason


@pytest.mark.parametrize("value", ["2111-04-18T02:06:47.261559Z", "2199-12-31T23:59:59.999999Z",
                                   "1901-01-01T00:00:00.000001Z"])
def test_timestamps_far_from_today_are_exact_to_the_microsecond(value):
    expected = datetime.fromisoformat(value)
    assert parse_line(line(platform(timestamp=value))).event_ts_us == micros(expected)
