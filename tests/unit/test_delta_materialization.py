"""The `delta` dbt materialization on a scratch dbt project that uses the real macros and profile:
full builds overwrite, incremental builds MERGE (updates, inserts, flagged deletes), append or replace
partitions in one commit, and make none when they have no rows."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

PROJECT = Path(__file__).resolve().parents[2]
DBT = str(Path(sys.executable).parent / "dbt")

MODEL = """
{{ config(materialized='delta', incremental_strategy='merge', unique_key='id', delete_flag='is_deleted') }}
with changes as (
    select * from bronze.things
    {% if is_incremental() %}
    where seq > (select max(seq) from {{ this }})
    {% endif %}
)
select id, arg_max(v, seq) as v, max(seq) as seq, arg_max(op, seq) = 'd' as is_deleted
from changes
group by id
"""

APPEND_MODEL = """
{{ config(materialized='delta', incremental_strategy='append') }}
select * from bronze.things
{% if is_incremental() %}
where seq > (select max(seq) from {{ this }})
{% endif %}
"""


# the latest row of each id, partitioned by its `day`; every day holding a new change is rebuilt
PARTITIONS_MODEL = """
{{ config(materialized='delta', incremental_strategy='replace_partitions', partition_by=['day'],
          delete_flag='is_deleted') }}
with days as (
    select distinct day from bronze.things
    {% if is_incremental() %}
    where seq > (select max(seq) from {{ this }})
    {% endif %}
),
latest as (
    select id, arg_max(v, seq) as v, max(seq) as seq, arg_max(op, seq) = 'd' as deleted, arg_max(day, seq) as day
    from bronze.things group by id
)
select id, v, seq, day, false as is_deleted from latest where not deleted and day in (select day from days)
union all
select null, null, null, day, true from days
"""


@pytest.fixture()
def dbt_project(tmp_path):
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    shutil.copytree(PROJECT / "dbt_project" / "macros", project / "macros")
    shutil.copy(PROJECT / "dbt_project" / "profiles.yml", project)
    (project / "dbt_project.yml").write_text(
        "name: lakehouse\nversion: '0.1.0'\nconfig-version: 2\nprofile: lakehouse\n"
        "models:\n  lakehouse:\n    +schema: silver\n"
    )
    (project / "models" / "things_current.sql").write_text(MODEL)
    (project / "models" / "things_changes.sql").write_text(APPEND_MODEL)
    (project / "models" / "things_by_day.sql").write_text(PARTITIONS_MODEL)
    return project


def _bronze(tmp_path, rows, mode):
    rows = [{"day": 1} | r for r in rows]
    table = pa.Table.from_pylist(rows, schema=pa.schema([("id", pa.int64()), ("v", pa.string()), ("seq", pa.int64()),
                                                          ("op", pa.string()), ("day", pa.int64())]))
    write_deltalake(str(tmp_path / "lake" / "bronze" / "things"), table, mode=mode)


def _build(project, tmp_path, *args, check=True):
    env = {**os.environ, "LAKEHOUSE_DATA_DIR": str(tmp_path), "PYTHONPATH": str(PROJECT)}
    env.pop("LAKEHOUSE_CONFIG", None)
    done = subprocess.run([DBT, "build", "--project-dir", str(project), "--profiles-dir", str(project), *args],
                          cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 or not check, done.stdout + done.stderr
    return done


def _current(tmp_path, model="things_current"):
    table = DeltaTable(str(tmp_path / "lake" / "silver" / model))
    rows = sorted((r["id"], r["v"], r["seq"]) for r in table.to_pyarrow_table().to_pylist())
    return rows, table.schema().to_arrow().names, table.history(1)[0]["operation"]


def test_incremental_runs_merge_updates_inserts_and_deletes(dbt_project, tmp_path):
    _bronze(tmp_path, [{"id": 1, "v": "a", "seq": 1, "op": "c"}, {"id": 2, "v": "b", "seq": 2, "op": "c"},
                       {"id": 9, "v": "z", "seq": 3, "op": "d"}], "overwrite")
    _build(dbt_project, tmp_path)
    rows, columns, operation = _current(tmp_path)
    assert rows == [(1, "a", 1), (2, "b", 2)]  # key 9 was deleted: not stored
    assert "is_deleted" not in columns and operation == "WRITE"

    _bronze(tmp_path, [{"id": 1, "v": "a2", "seq": 4, "op": "u"}, {"id": 2, "v": None, "seq": 5, "op": "d"},
                       {"id": 3, "v": "c", "seq": 6, "op": "c"}], "append")
    _build(dbt_project, tmp_path)
    rows, columns, operation = _current(tmp_path)
    assert rows == [(1, "a2", 4), (3, "c", 6)]
    assert "is_deleted" not in columns and operation == "MERGE"
    changes = DeltaTable(str(tmp_path / "lake" / "silver" / "things_changes"))
    assert sorted(r["seq"] for r in changes.to_pyarrow_table().to_pylist()) == [1, 2, 3, 4, 5, 6]
    assert changes.history(1)[0]["operationParameters"]["mode"] == "Append"

    _build(dbt_project, tmp_path, "--full-refresh")
    assert _current(tmp_path)[0] == [(1, "a2", 4), (3, "c", 6)]
    assert _current(tmp_path)[2] == "WRITE"


def test_replace_partitions_rebuilds_only_the_days_named_and_empties_a_day_left_without_rows(dbt_project, tmp_path):
    _bronze(tmp_path, [{"id": 1, "v": "a", "seq": 1, "op": "c", "day": 1}, {"id": 2, "v": "b", "seq": 2, "op": "c", "day": 2},
                       {"id": 3, "v": "c", "seq": 3, "op": "c", "day": 3}], "overwrite")
    _build(dbt_project, tmp_path, "--select", "things_by_day")
    table = DeltaTable(str(tmp_path / "lake" / "silver" / "things_by_day"))
    day_one = [p for p in table.file_uris() if "day=1/" in p]
    # id 2 changes on day 2, id 3 is deleted on day 3, which is left empty; day 1 is not touched
    _bronze(tmp_path, [{"id": 2, "v": "b2", "seq": 4, "op": "u", "day": 2},
                       {"id": 3, "v": None, "seq": 5, "op": "d", "day": 3}], "append")
    _build(dbt_project, tmp_path, "--select", "things_by_day")
    table = DeltaTable(str(tmp_path / "lake" / "silver" / "things_by_day"))
    rows = sorted((r["id"], r["v"], r["day"]) for r in table.to_pyarrow_table().to_pylist())
    assert rows == [(1, "a", 1), (2, "b2", 2)]
    assert table.metadata().partition_columns == ["day"] and "is_deleted" not in table.schema().to_arrow().names
    commit = table.history(1)[0]
    assert commit["operation"] == "WRITE" and "day" in commit["operationParameters"]["predicate"]
    assert day_one and [p for p in table.file_uris() if "day=1/" in p] == day_one


def test_an_incremental_run_without_rows_makes_no_commit(dbt_project, tmp_path):
    _bronze(tmp_path, [{"id": 1, "v": "a", "seq": 1, "op": "c"}], "overwrite")
    _build(dbt_project, tmp_path)
    versions = {m: DeltaTable(str(tmp_path / "lake" / "silver" / m)).version()
                for m in ("things_current", "things_changes", "things_by_day")}
    _build(dbt_project, tmp_path)  # nothing new in bronze
    assert {m: DeltaTable(str(tmp_path / "lake" / "silver" / m)).version() for m in versions} == versions


def test_replacing_partitions_of_a_table_laid_out_otherwise_says_how_to_rebuild_it(dbt_project, tmp_path):
    _bronze(tmp_path, [{"id": 1, "v": "a", "seq": 1, "op": "c"}], "overwrite")
    # the table as an earlier version of the project wrote it: not partitioned
    old = pa.table({"id": [1], "v": ["a"], "seq": [1], "day": [1]})
    write_deltalake(str(tmp_path / "lake" / "silver" / "things_by_day"), old)
    _bronze(tmp_path, [{"id": 2, "v": "b", "seq": 2, "op": "c"}], "append")
    done = _build(dbt_project, tmp_path, "--select", "things_by_day", check=False)
    assert done.returncode != 0
    assert "partitioned by nothing, the model by ['day']" in done.stdout
    assert "dbt build --full-refresh --select things_by_day+" in done.stdout and "Traceback" not in done.stdout
    assert DeltaTable(str(tmp_path / "lake" / "silver" / "things_by_day")).version() == 0
