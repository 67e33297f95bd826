"""The Debezium decoder against Debezium's own examples, real events of our stack, and each documented shape."""

import base64
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from pipelines.cdc.decoder import CONTRACT_KEYS, DecodeError, Decoder, decode

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DEBEZIUM = FIXTURES / "debezium"
LOCAL = FIXTURES / "local"
LAKEHOUSE = str(Path(sys.executable).parent / "lakehouse")

ANNE = {"id": 1, "first_name": "Anne", "last_name": "Kretchmar", "email": "annek@noanswer.org"}
ANNE_MARIE = {**ANNE, "first_name": "Anne Marie"}
MYSQL_ANNE = {**ANNE, "id": 1004}
MYSQL_ANNE_MARIE = {**ANNE_MARIE, "id": 1004}

# The meaning each manifest entry states, written out: (kind, op, key, row after, table)
EXPECTED = {
    "pg_doc_customers_1_create": ("change", "c", {"id": 1}, ANNE, "customers"),
    "pg_doc_customers_1_update": ("change", "u", {"id": 1}, ANNE_MARIE, "customers"),
    "pg_doc_customers_1_delete": ("change", "d", {"id": 1}, None, "customers"),
    "pg_doc_customers_1_tombstone": ("tombstone", None, {"id": 1}, None, None),
    "pg_doc_customers_truncate": ("change", "t", None, None, "customers"),
    "pg_doc_message_transactional": ("message", "m", None, {"prefix": "foo", "content": "Ymfy"}, None),
    "pg_doc_txn_571_begin": ("transaction", None, None, None, None),
    "pg_doc_txn_571_end": ("transaction", None, None, None, None),
    "unwrap_doc_update": ("change", "u", None, {"field1": "newvalue1", "field2": "newvalue2"}, None),
    "mysql_tutorial_customers_1004_snapshot_read": ("change", "r", {"id": 1004}, MYSQL_ANNE, "customers"),
    "mysql_tutorial_customers_1004_update": ("change", "u", {"id": 1004}, MYSQL_ANNE_MARIE, "customers"),
    "mysql_tutorial_customers_1004_delete": ("change", "d", {"id": 1004}, None, "customers"),
    "mysql_tutorial_customers_1004_tombstone": ("tombstone", None, {"id": 1004}, None, None),
    "mysql_tutorial_customers_1005_create": (
        "change", "c", {"id": 1005},
        {"id": 1005, "first_name": "Sarah", "last_name": "Thompson", "email": "kitt@acme.com"}, "customers",
    ),
}

MANIFEST = json.loads((DEBEZIUM / "manifest.json").read_text())["events"]


def _fixture(entry):
    value = (DEBEZIUM / entry["value"]).read_bytes()
    key = (DEBEZIUM / entry["key"]).read_bytes() if entry.get("key") else None
    return value, key


def test_every_manifest_entry_has_an_expected_meaning():
    assert {e["name"] for e in MANIFEST} == set(EXPECTED)


@pytest.mark.parametrize("entry", MANIFEST, ids=lambda e: e["name"])
def test_debezium_examples_decode_to_their_documented_meaning(entry):
    value, key = _fixture(entry)
    record = decode(value, key)
    kind, op, expected_key, after, table = EXPECTED[entry["name"]]
    assert (record.kind, record.op, record.key, record.after, record.table) == (kind, op, expected_key, after, table)


def test_deletes_identify_the_deleted_row():
    record = decode(*_fixture(next(e for e in MANIFEST if e["name"] == "mysql_tutorial_customers_1004_delete")))
    assert record.before == MYSQL_ANNE_MARIE and record.lsn == "mysql-bin.000003:725"


def test_transaction_end_carries_counts_per_collection():
    record = decode(*_fixture(next(e for e in MANIFEST if e["name"] == "pg_doc_txn_571_end")))
    assert record.transaction == {
        "status": "END", "id": "571:53195832", "event_count": 2,
        "data_collections": [{"data_collection": "s1.a", "event_count": 1}, {"data_collection": "s2.a", "event_count": 1}],
    }


def test_postgres_source_position_and_transaction():
    record = decode(*_fixture(MANIFEST[0]))
    assert (record.connector, record.database, record.lsn, record.tx_id) == ("postgresql", "postgres", 24023128, 555)


# --- real events of our own stack (Debezium 3.6, pgoutput, JsonConverter with schemas) -----------------


def test_real_postgres_event_decodes_money_exactly_and_keeps_types_readable():
    record = decode((LOCAL / "pg_shop_orders_u.value.json").read_bytes())
    after = record.after
    assert after["total_amount"] == "53.98"
    assert Decimal(after["subtotal"]) - Decimal(after["discount_amount"]) + Decimal(after["tax_amount"]) + Decimal(
        after["shipping_amount"]
    ) == Decimal(after["total_amount"])
    assert after["order_ts"] == "2026-11-01T00:37:45.465000Z"  # ZonedTimestamp, as sent
    assert after["status"] == "CONFIRMED"  # Enum
    assert json.loads(after["shipping_address"])["city"] == "Manchester"  # Json stays a JSON document
    assert record.before is not None and record.before["order_id"] == after["order_id"]  # REPLICA IDENTITY FULL
    assert isinstance(record.lsn, int) and record.transaction["id"] == record.tx_id


def test_real_postgres_delete_keeps_the_full_before_image():
    record = decode((LOCAL / "pg_shop_orders_d.value.json").read_bytes())
    assert record.op == "d" and record.after is None and record.before["total_amount"] == "69.70"


# --- logical types -----------------------------------------------------------------------------


def _with_schema(field_schema: dict, value) -> bytes:
    schema = {
        "type": "struct",
        "fields": [
            {"type": "struct", "optional": True, "field": "before", "fields": [{**field_schema, "field": "v"}]},
            {"type": "struct", "optional": True, "field": "after", "fields": [{**field_schema, "field": "v"}]},
            {"type": "string", "field": "op"},
        ],
    }
    payload = {"before": None, "after": {"v": value}, "op": "c", "source": {"connector": "postgresql", "lsn": 1}}
    return json.dumps({"schema": schema, "payload": payload}).encode()


def _unscaled(n: int) -> str:
    return base64.b64encode(n.to_bytes((n.bit_length() + 8) // 8, "big", signed=True)).decode()


@pytest.mark.parametrize(
    ("field_schema", "raw", "decoded"),
    [
        ({"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "parameters": {"scale": "2"}}, _unscaled(9999), "99.99"),
        ({"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "parameters": {"scale": "2"}}, _unscaled(-1), "-0.01"),
        ({"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "parameters": {"scale": "0"}}, _unscaled(10**30), str(10**30)),
        ({"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "parameters": {"scale": "4"}}, _unscaled(10), "0.0010"),
        ({"type": "struct", "name": "io.debezium.data.VariableScaleDecimal"}, {"scale": 3, "value": _unscaled(123456)}, "123.456"),
        ({"type": "int32", "name": "io.debezium.time.Date"}, 19_000, "2022-01-08"),
        ({"type": "int32", "name": "org.apache.kafka.connect.data.Date"}, -1, "1969-12-31"),
        ({"type": "int32", "name": "io.debezium.time.Time"}, 3_723_004, "01:02:03.004000"),
        ({"type": "int64", "name": "io.debezium.time.MicroTime"}, 45_296_000_001, "12:34:56.000001"),
        ({"type": "int64", "name": "io.debezium.time.NanoTime"}, 1_000_000_000, "00:00:01"),
        ({"type": "int64", "name": "io.debezium.time.Timestamp"}, 1_700_000_000_123, "2023-11-14T22:13:20.123000+00:00"),
        ({"type": "int64", "name": "io.debezium.time.MicroTimestamp"}, 1_700_000_000_000_001, "2023-11-14T22:13:20.000001+00:00"),
        ({"type": "int64", "name": "io.debezium.time.NanoTimestamp"}, 1_700_000_000_000_000_789, "2023-11-14T22:13:20.000000789+00:00"),
        ({"type": "string", "name": "io.debezium.time.ZonedTimestamp"}, "2023-11-14T22:13:20.5+01:00", "2023-11-14T22:13:20.5+01:00"),
        ({"type": "string", "name": "io.debezium.data.Uuid"}, "0b1f3c2e-0000-4000-8000-000000000001", "0b1f3c2e-0000-4000-8000-000000000001"),
        ({"type": "string", "name": "io.debezium.data.Json"}, '{"a": [1, 2]}', '{"a": [1, 2]}'),
        ({"type": "string", "name": "io.debezium.data.Enum", "parameters": {"allowed": "A,B"}}, "B", "B"),
        ({"type": "int64"}, 7, 7),
    ],
    ids=lambda v: v.get("name", v.get("type")) if isinstance(v, dict) and "type" in v else None,
)
def test_logical_types_decode_exactly(field_schema, raw, decoded):
    assert decode(_with_schema(field_schema, raw)).after == {"v": decoded}


def test_toast_placeholder_is_never_data():
    value = json.dumps(
        {"before": None, "after": {"id": 1, "notes": "__debezium_unavailable_value", "n": 2}, "op": "u", "source": {"lsn": 5}}
    )
    record = decode(value)
    assert record.after == {"id": 1, "n": 2}
    assert record.unavailable_columns == ("notes",)


def test_toast_placeholder_in_a_decimal_column_is_not_decoded_as_a_number():
    placeholder_bytes = base64.b64encode(b"__debezium_unavailable_value").decode()
    decimal = {"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "parameters": {"scale": "2"}}
    record = decode(_with_schema(decimal, placeholder_bytes))
    assert record.after == {} and record.unavailable_columns == ("v",)


# --- other documented shapes ----------------------------------------------------------------------


def test_flattened_delete_rewrite_is_a_delete():
    record = decode(json.dumps({"id": 7, "name": "x", "__deleted": "true", "__table": "items", "__lsn": 99}))
    assert (record.kind, record.op, record.before, record.after, record.table, record.lsn) == (
        "change", "d", {"id": 7, "name": "x"}, None, "items", 99,
    )


def test_flattened_row_with_op_field():
    record = decode(json.dumps({"id": 7, "__op": "c", "__source_ts_ms": 5}))
    assert (record.op, record.after, record.ts_ms) == ("c", {"id": 7}, 5)


def test_mongodb_documents_arrive_as_json_strings_and_stay_json():
    value = {
        "after": '{"_id": {"$oid": "5f1"}, "qty": {"$numberLong": "3"}}',
        "source": {"connector": "mongodb", "rs": "rs0", "collection": "orders", "db": "shop", "ord": 2, "ts_ms": 10},
        "op": "c",
        "ts_ms": 11,
    }
    record = decode(json.dumps(value), key=json.dumps({"id": '{"$oid": "5f1"}'}))
    assert record.after == {"_id": {"$oid": "5f1"}, "qty": {"$numberLong": "3"}}
    assert (record.table, record.lsn, record.connector) == ("orders", "10:2", "mongodb")


def test_sql_server_position():
    value = {
        "before": None, "after": {"id": 1}, "op": "c",
        "source": {"connector": "sqlserver", "change_lsn": "00000027:00000758:0005", "commit_lsn": "00000027:00000758:0006"},
    }
    assert decode(json.dumps(value)).lsn == "00000027:00000758:0005"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00\x01garbage", "not UTF-8"),
        (b'{"op": "x", "after": {}}', "unknown op 'x'"),
        (b"{}", "empty JSON object"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"before": null, "after": {"id": 1}, "source": {}}', "no 'op'"),
        (b'{"op": "c", "after": null, "source": {}}', "without an 'after'"),
        (b'{"op": "d", "before": null, "source": {}}', "cannot tell which row"),
    ],
)
def test_undecodable_values_are_rejected_with_the_reason(value, reason):
    with pytest.raises(DecodeError, match=reason):
        decode(value)


# --- the CLI contract ----------------------------------------------------------------------------


def _cli(*args):
    return subprocess.run([LAKEHOUSE, "cdc", "decode", *map(str, args)], capture_output=True, text=True, timeout=60)


def test_cli_prints_exactly_one_contract_object():
    events = DEBEZIUM / "events"
    done = _cli(events / "pg_doc_customers_1_create.value.json", "--key", events / "pg_doc_customers_1_key.json")
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    out = json.loads(line)
    assert tuple(out) == CONTRACT_KEYS
    assert (out["kind"], out["op"], out["key"], out["after"], out["lsn"], out["tx_id"]) == ("change", "c", {"id": 1}, ANNE, 24023128, 555)


def test_cli_file_with_null_is_a_tombstone():
    done = _cli(DEBEZIUM / "events" / "pg_doc_customers_1_tombstone.value.json")
    assert json.loads(done.stdout)["kind"] == "tombstone"


def test_cli_decimal_is_a_string_with_exact_digits():
    out = json.loads(_cli(LOCAL / "pg_shop_orders_c.value.json").stdout)
    assert out["after"]["total_amount"] == "11.75"


def test_cli_undecodable_value_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"op": "z", "after": {}}')
    done = _cli(bad)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and "unknown op 'z'" in done.stderr


def test_cli_errors_name_each_file_once(tmp_path):
    (tmp_path / "empty.json").write_text("")
    done = _cli(tmp_path / "empty.json")
    assert (done.returncode, done.stderr.count("empty.json")) == (2, 1)
    assert "the file is empty (a tombstone is the JSON literal null)" in done.stderr
    (tmp_path / "v.json").write_text("null")
    done = _cli(tmp_path / "v.json", "--key", tmp_path / "missing-key.json")
    assert done.returncode == 2
    assert done.stderr.strip() == f"lakehouse cdc decode: cannot read key file {tmp_path / 'missing-key.json'}: No such file or directory"


def test_cli_missing_file_exits_2_without_traceback(tmp_path):
    done = _cli(tmp_path / "missing.json")
    assert done.returncode == 2 and "Traceback" not in done.stderr and "missing.json" in done.stderr


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b'{"schema": {"type": "struct", "optional": false}}', "without its 'payload'"),
        (b'{"payload": {"op": "c", "after": {"id": 1}}}', "without its 'schema'"),
        (b'{"schema": {"type": "struct", "optional": false}, "payload": null}', "null payload under a required schema"),
    ],
)
def test_broken_jsonconverter_envelopes_are_rejected(value, reason):
    with pytest.raises(DecodeError, match=reason):
        decode(value)


def test_topics_of_full_change_events_reject_objects_without_op():
    with pytest.raises(DecodeError, match="no 'op'"):
        decode(b'{"foo": 1}', allow_flattened=False)
    assert decode(b'{"foo": 1}').after == {"foo": 1}  # as an ExtractNewRecordState row


def test_schemaless_null_envelope_is_still_a_tombstone():
    assert decode(b'{"schema": null, "payload": null}').kind == "tombstone"


# --- the schema cache of Decoder (used by ingestion) -----------------------------------------------


def test_one_decoder_over_a_stream_gives_what_a_fresh_decode_gives():
    decoder = Decoder()
    stream = [_fixture(e) for e in MANIFEST] + [((LOCAL / f"pg_shop_orders_{op}.value.json").read_bytes(), None) for op in "cud"]
    for value, key in stream * 2:  # the second pass runs on warm caches
        assert decoder.decode(value, key, "one.topic") == decode(value, key)


def test_records_after_a_schema_change_decode_with_their_own_schema():
    decoder = Decoder()
    decimal = {"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "parameters": {"scale": "2"}}
    assert decoder.decode(_with_schema(decimal, _unscaled(9999)), None, "t").after == {"v": "99.99"}
    rescaled = {**decimal, "parameters": {"scale": "3"}}
    assert decoder.decode(_with_schema(rescaled, _unscaled(9999)), None, "t").after == {"v": "9.999"}
    assert decoder.decode(_with_schema(decimal, _unscaled(1)), None, "t").after == {"v": "0.01"}


def test_payload_key_text_inside_the_schema_does_not_fool_the_envelope_split():
    # JsonConverter writes compact JSON; a parameter named "payload" puts `,"payload":` inside the schema
    field_schema = {"type": "string", "parameters": {"a": "1", "payload": "2"}}
    value = json.dumps(json.loads(_with_schema(field_schema, "x")), separators=(",", ":")).encode()
    assert value.index(b',"payload":') < value.index(b'"before":null')
    record, envelope = Decoder().decode_with_envelope(value, None, "t")
    assert record.after == {"v": "x"}
    assert envelope.prefix + envelope.payload_bytes(value) + b"}" == value
    assert json.loads(envelope.payload_bytes(value))["after"] == {"v": "x"}


def test_a_broken_payload_under_a_known_schema_is_still_a_decode_error():
    decoder = Decoder()
    good = _with_schema({"type": "string"}, "x")
    decoder.decode(good, None, "t")
    prefix_length = good.index(b'"payload":') + len(b'"payload":')
    with pytest.raises(DecodeError, match="not valid JSON"):
        decoder.decode(good[:prefix_length] + b'{"op": "c", "after": {]}', None, "t")
    required = json.loads(good)
    required["schema"]["optional"] = False
    decoder.decode(json.dumps(required, separators=(",", ":")).encode(), None, "t")
    with pytest.raises(DecodeError, match="null payload"):
        decoder.decode(json.dumps({**required, "payload": None}, separators=(",", ":")).encode(), None, "t")


def test_decimal_text_has_the_digits_decimal_format_writes():
    """logical_types writes decimals as text without Decimal for speed; pinned to Decimal's own "f" format."""
    import random

    from pipelines.cdc.logical_types import _unscaled_to_text

    rng = random.Random(4)
    for unscaled in [*range(-1200, 1200), *(rng.randint(-10**40, 10**40) for _ in range(3000))]:
        for scale in range(-2, 10):
            digits = tuple(int(d) for d in str(abs(unscaled)))
            assert _unscaled_to_text(unscaled, scale) == format(Decimal((int(unscaled < 0), digits, -scale)), "f")


def _compact_envelopes():
    """Every fixture that is a JsonConverter envelope, written compactly as the converter does, and one
    with a TOAST placeholder."""
    for path in sorted(DEBEZIUM.rglob("*.json")) + sorted(LOCAL.glob("*.json")):
        doc = json.loads(path.read_text())
        if isinstance(doc, dict) and set(doc) == {"schema", "payload"} and isinstance(doc["schema"], dict):
            yield pytest.param(json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode(), id=path.name)
    doc = json.loads((LOCAL / "pg_shop_orders_u.value.json").read_text())
    doc["payload"]["after"]["shipping_address"] = "__debezium_unavailable_value"
    yield pytest.param(json.dumps(doc, separators=(",", ":")).encode(), id="toast")


def _outcome(decode):
    try:
        record, envelope = decode()
        return record, envelope.prefix
    except DecodeError as exc:
        return "error", str(exc)


@pytest.mark.parametrize("value", list(_compact_envelopes()))
def test_a_value_without_its_envelope_prefix_decodes_as_the_whole_value(value):
    """The CDC ingest sends its decode workers values without their envelope prefix."""
    whole, envelope = Decoder().decode_with_envelope(value, None, "t")
    assert envelope.prefix is not None and value.startswith(envelope.prefix)
    assert whole.unavailable_columns == (("shipping_address",) if b"__debezium_unavailable_value" in value else ())
    payload = value[len(envelope.prefix) : -1]
    decoder = Decoder()
    for _ in range(2):  # the first time the envelope is new to the decoder, then it is known
        assert _outcome(lambda: decoder.decode_payload(payload, envelope.prefix, None, "t")) == (whole, envelope.prefix)


@pytest.mark.parametrize(
    "payload", [b'{"op":"c","after":', b"null", b'{"op":"x","after":{}}', b"[1]", b"{}", b'"text"', b"\xff"]
)
def test_a_payload_without_its_prefix_fails_or_not_as_the_whole_value_would(payload):
    value = json.dumps(json.loads((LOCAL / "pg_shop_orders_u.value.json").read_text()), separators=(",", ":")).encode()
    decoder = Decoder()
    _, envelope = decoder.decode_with_envelope(value, None, "t")
    prefix = envelope.prefix
    assert _outcome(lambda: decoder.decode_payload(payload, prefix, None, "t")) == _outcome(
        lambda: Decoder().decode_with_envelope(prefix + payload + b"}", None, "t")
    )


def test_the_same_schema_written_differently_is_kept_byte_for_byte():
    """A Connect upgrade may write an unchanged schema with its keys in another order. Each value must
    still equal its envelope prefix + raw payload + "}", whatever the decoder saw before (a warm and a
    cold decode worker give the same rows)."""
    doc = json.loads((LOCAL / "pg_shop_orders_u.value.json").read_text())
    first = json.dumps(doc, separators=(",", ":")).encode()
    reordered = {"schema": dict(reversed(list(doc["schema"].items()))), "payload": doc["payload"]}
    second = json.dumps(reordered, separators=(",", ":")).encode()
    assert first != second and json.loads(first) == json.loads(second)
    warm = Decoder()
    warm.decode_with_envelope(first, None, "t")
    for decoder in (warm, Decoder()):
        record, envelope = decoder.decode_with_envelope(second, None, "t")
        assert envelope.prefix + envelope.payload_bytes(second) + b"}" == second
        assert record == Decoder().decode(first, None, "t")
