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
