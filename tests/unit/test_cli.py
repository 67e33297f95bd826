"""The `lakehouse` command: user mistakes give one line on stderr and a non-zero exit, never a traceback."""

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
from confluent_kafka import Producer
from deltalake import DeltaTable, write_deltalake

LAKEHOUSE = str(Path(sys.executable).parent / "lakehouse")


def _run(args, tmp_path, **env):
    full_env = {"PATH": "/usr/bin:/bin", "LAKEHOUSE_DATA_DIR": str(tmp_path), **env}
    return subprocess.run([LAKEHOUSE, *args], capture_output=True, text=True, env=full_env, timeout=120)


def test_query_reads_gold_delta_tables_through_views(tmp_path):
    write_deltalake(str(tmp_path / "lake" / "gold" / "agg_x"), pa.table({"n": [1, 2, 3]}))
    done = _run(["query", "select sum(n) as total from gold.agg_x"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "6" in done.stdout


def test_query_of_a_missing_table_is_one_line_error(tmp_path):
    done = _run(["query", "select * from gold.nope"], tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("lakehouse query:") and "nope" in done.stderr


def test_broken_config_file_is_one_line_error_naming_the_file(tmp_path):
    config = tmp_path / "lakehouse.yaml"
    config.write_text("lake_root: [unclosed\n")
    done = _run(["query", "select 1"], tmp_path, LAKEHOUSE_CONFIG=str(config))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert str(config) in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_unknown_setting_is_named(tmp_path):
    config = tmp_path / "lakehouse.yaml"
    config.write_text("lake_rot: /tmp/x\n")
    done = _run(["query", "select 1"], tmp_path, LAKEHOUSE_CONFIG=str(config))
    assert done.returncode == 1 and "lake_rot" in done.stderr and "Traceback" not in done.stderr


def test_workload_against_unreachable_postgres_is_one_line_error(tmp_path):
    done = _run(
        ["workload", "run", "--seed", "1", "--customers", "1", "--days", "1"],
        tmp_path,
        LAKEHOUSE_POSTGRES_DSN="postgresql://postgres@127.0.0.1:1/shop",
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and done.stderr.strip()


def test_shell_runs_statements_from_its_input_and_reports_sql_errors_without_stopping(tmp_path):
    write_deltalake(str(tmp_path / "lake" / "gold" / "agg_x"), pa.table({"n": [1, 2, 3]}))
    statements = "select sum(n) * 5 as total\nfrom gold.agg_x;\nselect * from gold.nope;\nselect 40 + 2 as answer;\n\\q\n"
    done = subprocess.run([LAKEHOUSE, "shell"], input=statements, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "LAKEHOUSE_DATA_DIR": str(tmp_path)})
    assert done.returncode == 1, done.stderr  # a piped script with a failed statement fails
    assert "gold.agg_x" in done.stdout.splitlines()[0]  # the banner lists the tables
    assert "30" in done.stdout and "error:" in done.stdout and "nope" in done.stdout
    assert done.stdout.index("30") < done.stdout.index("error:") < done.stdout.index("42")  # an error does not end it


def test_shell_runs_a_last_statement_without_semicolon_and_shows_every_result(tmp_path):
    done = subprocess.run([LAKEHOUSE, "shell"], input="select 40 + 1 as a; select 40 + 2 as b", capture_output=True,
                          text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "LAKEHOUSE_DATA_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert "41" in done.stdout and "42" in done.stdout


def test_query_shows_the_result_of_every_statement(tmp_path):
    done = _run(["query", "select 40 + 1 as a; select 40 + 2 as b"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "41" in done.stdout and "42" in done.stdout


def test_query_max_rows_must_be_positive(tmp_path):
    done = _run(["query", "select 1", "--max-rows", "-1"], tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "'-1' is not a positive whole number" in done.stderr


def test_ingest_cdc_reads_a_topic_into_bronze(tmp_path):
    producer = Producer({"test.mock.num.brokers": 1})  # librdkafka's mock cluster, alive while this test runs
    bootstrap = ",".join(f"{b.host}:{b.port}" for b in producer.list_topics(timeout=10).brokers.values())
    for i in range(5):
        payload = {"before": None, "after": {"order_id": str(i)}, "op": "c", "ts_ms": 1700000000000,
                   "source": {"connector": "postgresql", "table": "orders", "lsn": 100 + i, "txId": 7}}
        producer.produce("shop.public.orders", key=json.dumps({"order_id": str(i)}), value=json.dumps(payload))
    producer.produce("shop.public.orders", value=b"\x00not json")
    producer.flush(10)
    done = _run(["ingest", "cdc", "--table", "orders"], tmp_path, LAKEHOUSE_KAFKA_BOOTSTRAP=bootstrap)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "shop.public.orders: read 6, bronze 5, quarantined 1"
    assert DeltaTable(str(tmp_path / "lake" / "bronze" / "cdc_orders")).to_pyarrow_table().num_rows == 5


def test_ingest_cdc_into_a_lake_root_that_cannot_hold_tables_is_one_line_error(tmp_path):
    producer = Producer({"test.mock.num.brokers": 1})
    bootstrap = ",".join(f"{b.host}:{b.port}" for b in producer.list_topics(timeout=10).brokers.values())
    payload = {"before": None, "after": {"order_id": "1"}, "op": "c", "ts_ms": 1700000000000,
               "source": {"connector": "postgresql", "table": "orders", "lsn": 100, "txId": 7}}
    producer.produce("shop.public.orders", key=b"{}", value=json.dumps({"payload": payload}).encode())
    producer.flush(10)
    (tmp_path / "a_file").write_text("")
    done = _run(["ingest", "cdc", "--table", "orders"], tmp_path, LAKEHOUSE_KAFKA_BOOTSTRAP=bootstrap,
                LAKEHOUSE_LAKE_ROOT=str(tmp_path / "a_file"))
    assert "a_file/bronze" in _one_line_error(done, "ingest")


def test_a_lake_root_that_is_a_file_is_one_line_error_for_the_commands_that_list_tables(tmp_path):
    (tmp_path / "a_file").write_text("")
    for command in (["maintain"], ["query", "select 1"]):
        line = _one_line_error(_run(command, tmp_path, LAKEHOUSE_LAKE_ROOT=str(tmp_path / "a_file")), command[0])
        assert line.endswith(f"the lake root {tmp_path / 'a_file'} is not a directory")


def test_ingest_cdc_from_an_unreachable_broker_is_one_line_error(tmp_path):
    done = _run(["ingest", "cdc", "--table", "orders"], tmp_path, LAKEHOUSE_KAFKA_BOOTSTRAP="127.0.0.1:1")
    assert done.returncode == 1
    assert done.stderr.startswith("lakehouse ingest:") and "127.0.0.1:1" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1  # neither a traceback nor librdkafka's connection log


def test_ctrl_c_stops_a_follower_cleanly_with_its_records_committed(tmp_path):
    """Ctrl-C reaches the whole process group, decode workers included: only the ingest process may act
    on it, committing what it holds, then exit 0."""
    import os
    import signal
    import threading
    import time

    producer = Producer({"test.mock.num.brokers": 1})
    bootstrap = ",".join(f"{b.host}:{b.port}" for b in producer.list_topics(timeout=10).brokers.values())
    value = json.dumps({"op": "c", "after": {"id": 1}, "source": {"connector": "postgresql", "lsn": 1}})
    producer.produce("shop.public.orders", value=value)
    producer.flush(10)
    follower = subprocess.Popen(
        [LAKEHOUSE, "ingest", "cdc", "--table", "orders", "--follow", "--max-latency", "30"],
        env={"PATH": "/usr/bin:/bin", "LAKEHOUSE_DATA_DIR": str(tmp_path), "LAKEHOUSE_KAFKA_BOOTSTRAP": bootstrap},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    produced = [1]
    stop_producing = threading.Event()

    def keep_producing():  # records keep arriving, so some are always at the workers when Ctrl-C comes
        while not stop_producing.is_set():
            producer.produce("shop.public.orders", value=value)
            producer.poll(0)
            produced[0] += 1
            time.sleep(0.002)
        producer.flush(10)

    writer = threading.Thread(target=keep_producing)
    try:
        assert "following 1 topics" in follower.stdout.readline()
        writer.start()
        time.sleep(3)
        os.killpg(follower.pid, signal.SIGINT)
        _, stderr = follower.communicate(timeout=60)
    finally:
        stop_producing.set()
        if writer.is_alive():
            writer.join()
        if follower.poll() is None:
            os.killpg(follower.pid, signal.SIGKILL)
    assert follower.returncode == 0, stderr
    bronze = DeltaTable(str(tmp_path / "lake" / "bronze" / "cdc_orders")).to_pyarrow_table(columns=["partition", "offset"])
    rows = list(zip(bronze.column("partition").to_pylist(), bronze.column("offset").to_pylist()))
    assert len(rows) == len(set(rows)) > 1
    for partition in {p for p, _ in rows}:  # a prefix of each partition, no gap: the rest is read next time
        offsets = sorted(o for p, o in rows if p == partition)
        assert offsets == list(range(len(offsets)))


def _one_line_error(done, command: str) -> str:
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    (line,) = [l for l in done.stderr.splitlines() if l.startswith(f"lakehouse {command}:")]
    return line


def test_settings_mistakes_are_one_line_errors(tmp_path):
    (tmp_path / "a_directory").mkdir()
    (tmp_path / "no_value.yaml").write_text("lake_root:\n")
    (tmp_path / "utf16.yaml").write_bytes(b"\xff\xfe x\n")
    (tmp_path / "list.yaml").write_text("data_dir: [1, 2]\nlake_root: {a: 1}\n")
    cases = {
        str(tmp_path / "a_directory"): "cannot read the settings file",
        str(tmp_path / "typo.yaml"): "LAKEHOUSE_CONFIG names",
        str(tmp_path / "no_value.yaml"): "['lake_root'] have no value",
        str(tmp_path / "utf16.yaml"): "not UTF-8 text (byte 0)",
        str(tmp_path / "list.yaml"): "['data_dir', 'lake_root'] take a single value, not a list or mapping",
    }
    for config, message in cases.items():
        assert message in _one_line_error(_run(["query", "select 1"], tmp_path, LAKEHOUSE_CONFIG=config), "query")
    (tmp_path / "stack").mkdir()
    (tmp_path / "stack" / "state.json").write_text('{"postgres": {"port": 5432}}')
    line = _one_line_error(_run(["query", "select 1"], tmp_path), "query")
    assert "state.json: not a stack state file" in line


def test_partitions_start_date_is_a_checked_setting(tmp_path):
    from pipelines.settings import load_settings

    assert load_settings({"LAKEHOUSE_PARTITIONS_START_DATE": "2024-06-01"}).partitions_start_date == "2024-06-01"
    (tmp_path / "lakehouse.yaml").write_text("partitions_start_date: 2025-02-01\n")  # YAML reads it as a date
    assert load_settings({"LAKEHOUSE_CONFIG": str(tmp_path / "lakehouse.yaml")}).partitions_start_date == "2025-02-01"
    line = _one_line_error(_run(["query", "select 1"], tmp_path, LAKEHOUSE_PARTITIONS_START_DATE="2025-13-01"), "query")
    assert "partitions_start_date must be a date like 2026-01-01, got '2025-13-01'" in line


def test_relative_paths_are_resolved_once_against_the_starting_directory(tmp_path, monkeypatch):
    from pipelines.settings import load_settings

    monkeypatch.chdir(tmp_path)
    settings = load_settings({"LAKEHOUSE_LAKE_ROOT": "rel/lake", "LAKEHOUSE_LINEAGE_FILE": "rel/events.jsonl",
                              "LAKEHOUSE_DATA_DIR": "rel/data"})
    assert settings.lake_root == str(tmp_path / "rel" / "lake")
    assert (settings.lineage_file, settings.data_dir) == (tmp_path / "rel" / "events.jsonl", tmp_path / "rel" / "data")
    assert load_settings({"LAKEHOUSE_LAKE_ROOT": "s3://bucket/lake/"}).lake_root == "s3://bucket/lake"


def test_data_dir_in_the_settings_file_moves_everything_under_it(tmp_path):
    from pipelines.settings import load_settings

    (tmp_path / "lakehouse.yaml").write_text(f"data_dir: {tmp_path / 'elsewhere'}\n")
    settings = load_settings({"LAKEHOUSE_CONFIG": str(tmp_path / "lakehouse.yaml")})
    assert settings.data_dir == tmp_path / "elsewhere"
    assert settings.lake_root == str(tmp_path / "elsewhere" / "lake")
    assert settings.lineage_file == tmp_path / "elsewhere" / "lineage" / "events.jsonl"


def test_materialize_selection_mistakes_are_one_line_errors(tmp_path):
    nothing = _one_line_error(_run(["materialize", "--select", 'key:"gold/no_such_model"'], tmp_path), "materialize")
    assert "matches no asset" in nothing
    broken = _one_line_error(_run(["materialize", "--select", "key:gold/dim_date)("], tmp_path), "materialize")
    assert "is not an asset selection" in broken
    lineage = _one_line_error(_run(["materialize", "--select", "key:gold/dim_date"], tmp_path,
                                   OPENLINEAGE_CONFIG=str(tmp_path / "missing.yml")), "materialize")
    assert "OPENLINEAGE_CONFIG" in lineage
    # no S3 endpoint listens here: the catch-up range of bronze/events cannot be listed
    s3 = _one_line_error(_run(["materialize", "--select", "key:bronze/events"], tmp_path,
                              LAKEHOUSE_S3_ENDPOINT_URL="http://127.0.0.1:9"), "materialize")
    assert "cannot list" in s3
