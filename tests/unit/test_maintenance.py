"""Lake upkeep (pipelines/maintenance.py): compaction keeps every row and the exactly-once offsets; vacuum
deletes only the files no version within the retention needs; one broken table does not stop the rest."""

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

from pipelines.definitions import defs
from pipelines.maintenance import maintain_lake
from pipelines.resources import LakehouseSettings
from pipelines.settings import SettingsError, load_settings


def _settings(tmp_path, **env):
    return load_settings({"LAKEHOUSE_DATA_DIR": str(tmp_path), **env})


def _parquet_files(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*.parquet")}


@pytest.fixture()
def lake(tmp_path) -> Path:
    """A bronze table of four small batches with their offsets, and a silver table rewritten twice."""
    bronze = tmp_path / "lake" / "bronze" / "cdc_orders"
    for batch in range(4):
        write_deltalake(str(bronze), pa.table({"offset": list(range(batch * 10, batch * 10 + 10))}), mode="append",
                        commit_properties=CommitProperties(app_transactions=[Transaction("shop.public.orders-0", batch * 10 + 10)]))
    silver = tmp_path / "lake" / "silver" / "int_orders_current"
    for version in range(3):
        write_deltalake(str(silver), pa.table({"order_id": [1, 2, 3], "v": [version] * 3}), mode="overwrite")
    return tmp_path


def test_compaction_keeps_rows_and_offsets_and_vacuum_deletes_unreferenced_files(lake):
    bronze, silver = lake / "lake" / "bronze" / "cdc_orders", lake / "lake" / "silver" / "int_orders_current"
    assert len(_parquet_files(bronze)) == 4 and len(_parquet_files(silver)) == 3
    results = {r.table: r for r in maintain_lake(_settings(lake, LAKEHOUSE_VACUUM_RETENTION_HOURS="0"))}
    assert results["bronze.cdc_orders"].files_compacted == 4 and results["bronze.cdc_orders"].files_written == 1
    assert results["silver.int_orders_current"].files_deleted == 2  # the two overwritten versions
    table = DeltaTable(str(bronze))
    assert sorted(table.to_pyarrow_table()["offset"].to_pylist()) == list(range(40))
    assert table.transaction_version("shop.public.orders-0") == 40  # ingestion resumes where it stopped
    assert results["bronze.cdc_orders"].files_deleted == 4  # the small files compaction replaced
    assert len(_parquet_files(bronze)) == 1
    assert DeltaTable(str(silver)).to_pyarrow_table()["v"].to_pylist() == [2, 2, 2]
    assert len(_parquet_files(silver)) == 1


def test_files_removed_within_the_retention_stay_on_disk(lake):
    silver = lake / "lake" / "silver" / "int_orders_current"
    results = {r.table: r for r in maintain_lake(_settings(lake))}  # default: 168 hours
    assert results["silver.int_orders_current"].files_deleted == 0
    assert len(_parquet_files(silver)) == 3
    assert DeltaTable(str(silver), version=0).to_pyarrow_table()["v"].to_pylist() == [0, 0, 0]


def test_a_broken_table_is_reported_and_the_others_are_still_maintained(lake):
    broken = lake / "lake" / "gold" / "broken" / "_delta_log"
    broken.mkdir(parents=True)
    (broken / "00000000000000000000.json").write_text("garbage{")
    results = {r.table: r for r in maintain_lake(_settings(lake, LAKEHOUSE_VACUUM_RETENTION_HOURS="0"))}
    assert results["gold.broken"].error.startswith("DeltaError: ") and "\n" not in results["gold.broken"].error
    assert results["bronze.cdc_orders"].error is None and results["bronze.cdc_orders"].files_written == 1


def test_retention_must_be_whole_hours(tmp_path):
    with pytest.raises(SettingsError, match="vacuum_retention_hours"):
        _settings(tmp_path, LAKEHOUSE_VACUUM_RETENTION_HOURS="a week")


def test_the_maintenance_job_reports_what_it_did_and_ships_stopped(lake, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_VACUUM_RETENTION_HOURS", "0")
    result = defs.resolve_job_def("lake_maintenance").execute_in_process(
        resources={"lakehouse": LakehouseSettings(data_dir=str(lake))}
    )
    assert result.success
    outputs = [e for e in result.all_node_events if e.event_type_value == "STEP_OUTPUT"]
    values = {k: v.value for k, v in outputs[0].event_specific_data.metadata.items()}
    assert values == {"tables": 2, "files compacted": 4, "files deleted": 6}
    schedule = defs.get_schedule_def("nightly_maintenance")
    assert schedule.cron_schedule == "0 3 * * *" and schedule.default_status == dg.DefaultScheduleStatus.STOPPED


def test_maintain_command(lake):
    lakehouse = str(Path(sys.executable).parent / "lakehouse")
    done = subprocess.run([lakehouse, "maintain"], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "LAKEHOUSE_DATA_DIR": str(lake)})
    assert done.returncode == 0, done.stderr
    assert "bronze.cdc_orders: 4 files compacted into 1, 0 deleted" in done.stdout
    assert done.stdout.strip().endswith("2 tables, vacuum retention 168 h")


def test_the_number_of_decode_workers_is_a_whole_number_of_at_least_one(tmp_path):
    from pipelines.settings import SettingsError, load_settings

    assert load_settings({"LAKEHOUSE_DATA_DIR": str(tmp_path), "LAKEHOUSE_CDC_DECODE_WORKERS": "3"}).cdc_decode_workers == 3
    for wrong in ("0", "two", "-1"):
        with pytest.raises(SettingsError, match="cdc_decode_workers"):
            load_settings({"LAKEHOUSE_DATA_DIR": str(tmp_path), "LAKEHOUSE_CDC_DECODE_WORKERS": wrong})
