"""The `lakehouse` command: user mistakes give one line on stderr and a non-zero exit, never a traceback."""

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
from deltalake import write_deltalake

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
