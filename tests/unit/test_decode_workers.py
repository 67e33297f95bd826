"""Decoding in worker processes: the same rows as decoding whole values, nothing lost, no orphans."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipelines.cdc.decode_workers import POOL, decode_chunk, strip_prefix

TOPIC = "shop.public.orders"
SCHEMA = {
    "type": "struct",
    "optional": False,
    "fields": [
        {"type": "struct", "optional": True, "field": "before", "fields": [
            {"type": "string", "optional": False, "field": "order_id"},
            {"type": "bytes", "optional": False, "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
             "parameters": {"scale": "2"}, "field": "total_amount"}]},
        {"type": "struct", "optional": True, "field": "after", "fields": [
            {"type": "string", "optional": False, "field": "order_id"},
            {"type": "bytes", "optional": False, "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
             "parameters": {"scale": "2"}, "field": "total_amount"}]},
        {"type": "string", "optional": False, "field": "op"},
    ],
}


def _value(i: int, schema=SCHEMA) -> bytes:
    payload = {"before": None, "after": {"order_id": f"o{i}", "total_amount": "AMs="}, "op": "c",
               "source": {"connector": "postgresql", "lsn": 100 + i, "txId": 7}, "ts_ms": 1700000000000 + i}
    return json.dumps({"schema": schema, "payload": payload}, separators=(",", ":")).encode()


def _records(values, prefix=None):
    return [(0, offset, 1700000000000, None, *strip_prefix(value, prefix)) for offset, value in enumerate(values)]


def test_stripped_values_decode_to_the_same_rows_as_whole_ones():
    values = [_value(i) for i in range(5)]
    whole = decode_chunk(TOPIC, False, None, _records(values))
    prefix = whole.last_prefix
    assert prefix is not None and values[0].startswith(prefix)
    stripped = _records(values, prefix)
    assert all(is_stripped and len(value) < len(values[0]) // 2 for *_, value, is_stripped in stripped)

    again = decode_chunk(TOPIC, False, prefix, stripped)
    assert again.rows.equals(whole.rows)
    assert json.loads(again.rows.column("after")[0].as_py()) == {"order_id": "o0", "total_amount": "2.03"}
    # value = envelope prefix || raw_payload || "}", whichever way it travelled
    assert [prefix + p.encode() + b"}" for p in again.rows.column("raw_payload").to_pylist()] == values


def test_a_value_under_another_schema_is_sent_whole_and_decoded_with_its_own_schema():
    prefix = decode_chunk(TOPIC, False, None, _records([_value(0)])).last_prefix
    wider = {**SCHEMA, "fields": [*SCHEMA["fields"], {"type": "int64", "optional": True, "field": "ts_ms"}]}
    changed = _value(1, wider)
    assert strip_prefix(changed, prefix) == (changed, False)
    chunk = decode_chunk(TOPIC, False, prefix, _records([_value(0), changed], prefix))
    assert chunk.rows.num_rows == 2 and len(chunk.envelopes) == 2
    assert changed.startswith(chunk.last_prefix)


def test_a_stripped_record_that_does_not_decode_is_quarantined_with_its_original_bytes():
    prefix = decode_chunk(TOPIC, False, None, _records([_value(0)])).last_prefix
    broken = prefix + b'{"op":"c","after":' + b"}"  # the envelope is fine, the payload is cut short
    good = _value(1)
    chunk = decode_chunk(TOPIC, False, prefix, _records([broken, good], prefix))
    assert chunk.rows.column("offset").to_pylist() == [1]
    [row] = chunk.quarantine
    assert (row["offset"], row["raw_value"], row["location"]) == (0, broken, f"{TOPIC}/0/0")
    assert "not valid JSON" in row["error"]


def test_the_pool_decodes_in_another_process_and_recovers_from_a_killed_worker():
    records = _records([_value(0)])
    assert POOL.submit(1, TOPIC, False, None, records).result(timeout=60).rows.num_rows == 1
    pids = [p.pid for p in POOL._executor._processes.values()]
    assert pids and os.getpid() not in pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the executor notices the dead worker and marks itself broken
        try:
            assert POOL.submit(1, TOPIC, False, None, records).result(timeout=60).rows.num_rows == 1
            break
        except Exception:  # noqa: BLE001 - BrokenProcessPool while the death is being noticed
            time.sleep(0.2)
    else:
        pytest.fail("the pool did not recover from a killed worker")


def test_workers_ignore_ctrl_c_and_sigterm_which_are_for_the_ingest_process_to_act_on():
    records = _records([_value(0)])
    assert POOL.submit(1, TOPIC, False, None, records).result(timeout=60).rows.num_rows == 1
    pids = sorted(p.pid for p in POOL._executor._processes.values())
    for pid in pids:
        os.kill(pid, signal.SIGINT)
        os.kill(pid, signal.SIGTERM)
    time.sleep(0.5)
    assert POOL.submit(1, TOPIC, False, None, records).result(timeout=60).rows.num_rows == 1
    assert sorted(p.pid for p in POOL._executor._processes.values()) == pids


def test_a_process_forked_after_the_pool_started_decodes_with_a_pool_of_its_own():
    records = _records([_value(0)])
    assert POOL.submit(1, TOPIC, False, None, records).result(timeout=60).rows.num_rows == 1
    child = os.fork()
    if child == 0:
        ok = False
        try:
            ok = POOL.submit(1, TOPIC, False, None, records).result(timeout=60).rows.num_rows == 1
        finally:
            os._exit(0 if ok else 1)
    deadline = time.monotonic() + 60
    while (done := os.waitpid(child, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    if done[0] == 0:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        pytest.fail("the forked process hung on the parent's pool")
    assert os.waitstatus_to_exitcode(done[1]) == 0


def test_workers_exit_when_the_ingest_process_is_killed(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from pipelines.cdc.decode_workers import POOL
        POOL.submit(1, "t", False, None, []).result(timeout=60)
        print(*[p.pid for p in POOL._executor._processes.values()], flush=True)
        import time
        time.sleep(600)
    """)
    ingest = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(pid) for pid in ingest.stdout.readline().split()]
        assert workers
    finally:
        ingest.kill()  # SIGKILL: no atexit, no pool shutdown
        ingest.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() and _alive(pid) for pid in workers):
        time.sleep(0.2)
    assert not any(Path(f"/proc/{pid}").exists() and _alive(pid) for pid in workers)


def _alive(pid: int) -> bool:
    """Not a zombie (an orphan that exited is reaped by init, but may linger as one for a moment)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _decimal_schema(scale: str, extra: list | None = None) -> dict:
    row = {"type": "struct", "optional": True, "fields": [
        {"type": "string", "optional": False, "field": "order_id"},
        {"type": "bytes", "optional": False, "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
         "parameters": {"scale": scale}, "field": "total_amount"}, *(extra or [])]}
    return {**SCHEMA, "fields": [{**row, "field": "before"}, {**row, "field": "after"}, SCHEMA["fields"][2]]}


def test_each_value_decodes_under_its_own_schema_when_schemas_alternate_within_a_chunk():
    """Stripped values under one schema, a whole value under another between them: the decoder's memo of
    the last prefix it compared must not hand the second schema to the third value."""
    narrow, wide = _decimal_schema("2"), _decimal_schema("3", [{"type": "string", "optional": True, "field": "note"}])
    prefix = decode_chunk(TOPIC, False, None, _records([_value(0, narrow)])).last_prefix
    chunk = decode_chunk(TOPIC, False, prefix, [
        (0, 1, None, None, *strip_prefix(_value(1, narrow), prefix)),
        (0, 2, None, None, _value(2, wide), False),
        (0, 3, None, None, *strip_prefix(_value(3, narrow), prefix)),
    ])
    amounts = [json.loads(after)["total_amount"] for after in chunk.rows.column("after").to_pylist()]
    assert amounts == ["2.03", "0.203", "2.03"]


def test_a_value_that_starts_with_the_prefix_but_is_no_envelope_under_it_is_kept_whole():
    """An extra top-level key, or a byte after the closing brace: such a value is not `prefix + payload +
    "}"`, so bronze must hold it whole (no schema id), never the stripped part alone."""
    prefix = decode_chunk(TOPIC, True, None, _records([_value(0)])).last_prefix
    extra_key = _value(1)[:-1] + b',"x":1}'
    trailing_newline = _value(2) + b"\n"
    # with flattened records allowed, the extra-key document decodes as a row
    stored = {row["offset"]: row for row in decode_chunk(
        TOPIC, True, prefix, _records([extra_key, trailing_newline], prefix)).rows.to_pylist()}
    assert stored[0]["value_schema_id"] is None and stored[0]["raw_payload"].encode() == extra_key
    assert stored[1]["value_schema_id"] is None and stored[1]["raw_payload"].encode() == trailing_newline
    # without, it is quarantined, with the bytes that arrived
    [row] = decode_chunk(TOPIC, False, prefix, _records([extra_key], prefix)).quarantine
    assert row["raw_value"] == extra_key


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b'{"op":"c","after":{"id":1},"ts_ms":"soon"}', "ts_ms must be an integer"),
        (b'{"op":"c","after":{"id":1},"ts_ms":99999999999999999999}', "ts_ms must be an integer"),
        (b'{"op":"c","after":{"id":1},"ts_ms":1e300}', "ts_ms must be an integer"),
        (b'{"op":"c","after":{"id":1},"source":{"table":{"name":"orders"}}}', "table must be a string"),
        (b'{"op":"c","after":' * 3000 + b"1" + b"}" * 3000, "nested too deeply"),
        (b'{"op":"c","after":{"id":1},"source":{"table":"\\ud800","lsn":1}}', "cannot be stored in bronze"),
    ],
    ids=["ts_text", "ts_beyond_int64", "ts_float", "table_object", "deep_nesting", "lone_surrogate"],
)
def test_a_value_bronze_cannot_store_is_quarantined_and_its_neighbours_are_kept(value, reason):
    good = b'{"op":"c","after":{"id":2},"source":{"lsn":2}}'
    chunk = decode_chunk(TOPIC, False, None, [(0, 0, None, None, good, False), (0, 1, None, b"{\"id\":1}", value, False),
                                              (0, 2, None, None, good, False)])
    assert chunk.rows.column("offset").to_pylist() == [0, 2]
    [row] = chunk.quarantine
    assert (row["offset"], row["raw_key"], row["raw_value"]) == (1, b"{\"id\":1}", value)
    assert reason in row["error"]
