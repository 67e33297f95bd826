"""Lake upkeep: compact small files and delete the files no table version needs any more.

Every incremental run adds files (bronze batches, MERGE rewrites) and marks the replaced ones removed,
but Delta only forgets them logically: without a vacuum the lake grows by the rewritten size of every
MERGE, every hour. `maintain_lake` compacts each table's small files into bigger ones and then vacuums
the files removed longer than `retention_hours` ago; readers of the current version never need them,
and time travel keeps working inside the retention window.
"""

from __future__ import annotations

from dataclasses import dataclass

from deltalake import DeltaTable
from deltalake.exceptions import DeltaError

from pipelines.lake import LAKE_WRITER, LAYERS, delta_tables
from pipelines.settings import Settings

@dataclass(frozen=True)
class TableMaintenance:
    table: str  # <layer>.<name>
    files_compacted: int  # small files rewritten into `files_written`
    files_written: int
    files_deleted: int  # vacuumed: removed from the table more than the retention ago
    error: str | None = None

    def summary(self) -> str:
        if self.error is not None:
            return f"{self.table}: {self.error}"
        return f"{self.table}: {self.files_compacted} files compacted into {self.files_written}, {self.files_deleted} deleted"


def maintain_table(path: str, storage_options: dict[str, str] | None, retention_hours: int) -> tuple[int, int, int]:
    table = DeltaTable(path, storage_options=storage_options)
    compacted = table.optimize.compact(writer_properties=LAKE_WRITER)
    # the retention is the operator's explicit choice (settings), so it may be below the table's default
    deleted = table.vacuum(retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False)
    return compacted["numFilesRemoved"], compacted["numFilesAdded"], len(deleted)


def maintain_lake(settings: Settings) -> list[TableMaintenance]:
    """Every Delta table of the lake, with the retention of settings.vacuum_retention_hours; a table that
    fails is reported and the others still run."""
    retention_hours = settings.vacuum_retention_hours
    results = []
    for layer in LAYERS:
        for name in delta_tables(settings, layer):
            label = f"{layer}.{name}"
            try:
                removed, added, deleted = maintain_table(
                    settings.layer_path(layer, name), settings.delta_storage_options() or None, retention_hours
                )
            except DeltaError as exc:  # a concurrent writer won the commit, a corrupt table, ...
                # delta-rs appends a Rust backtrace to some messages: the first line says what went wrong
                first_line = (str(exc).splitlines() or [""])[0]
                results.append(TableMaintenance(label, 0, 0, 0, error=f"{type(exc).__name__}: {first_line}"))
            else:
                results.append(TableMaintenance(label, removed, added, deleted))
    return results
