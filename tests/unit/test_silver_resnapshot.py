"""A Debezium re-snapshot (a connector reset, an incremental snapshot) sends every row that exists again, as
op `r`: silver and gold must come out as before it, in one build or incrementally. The rows that exist are
worked out here from test_silver_cdc's history of the source, not read from silver."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from tests.unit.test_silver_cdc import CHANGES, TABLES, Change, bronze_rows, content, in_order, read, write_batch, write_lake
from tests.unit.test_silver_rejects import COMPARED, ok, run_dbt

KEYS = {"customers": "customer_id", "products": "product_id", "inventory": "inventory_id", "orders": "order_id",
        "order_items": "order_item_id", "payments": "payment_id", "shipments": "shipment_id"}
SNAPSHOT_LSN = 10_000


def rows_at_the_end() -> dict[str, list[dict]]:
    """Each table's rows after the whole history, by replaying it (insert, update, delete, truncate)."""
    tables: dict[str, dict] = {t: {} for t in TABLES}
    for change in CHANGES:
        rows = tables[change.table]
        if change.op == "t":
            rows.clear()
        elif change.op == "d":
            rows.pop(change.row[KEYS[change.table]])
        else:
            previous = rows.get(change.row[KEYS[change.table]], {})
            # an unchanged TOASTed value is the one the row had
            rows[change.row[KEYS[change.table]]] = change.row | {c: previous[c] for c in change.unavailable}
    return {t: list(rows.values()) for t, rows in tables.items()}


def resnapshot_batch() -> dict[str, list[dict]]:
    """Every existing row read again, at offsets after each topic's history."""
    batch = {}
    for table, rows in rows_at_the_end().items():
        history = bronze_rows(CHANGES, table, in_order(table))
        reads = [Change(table, "r", SNAPSHOT_LSN, row) for row in rows]
        offsets = len(history) + 10_001  # past the tombstones' offsets too
        batch[table] = [r | {"bronze_id": f"shop.public.{table}/0/{offsets + i}", "offset": offsets + i,
                             "ingested_at": r["ingested_at"] + timedelta(hours=1)}
                        for i, r in enumerate(bronze_rows(reads, table, list(range(len(reads)))))]
    assert sum(len(rows) for rows in batch.values()) >= len(TABLES)
    return batch


@pytest.fixture(scope="module")
def before(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("before")
    write_lake(root, {t: in_order(t) for t in TABLES})
    ok(run_dbt(root, "run"))
    return root


def test_a_resnapshot_changes_no_silver_or_gold_table(before, tmp_path):
    write_lake(tmp_path, {t: in_order(t) for t in TABLES})
    ok(run_dbt(tmp_path, "run"))
    write_batch(tmp_path, resnapshot_batch())
    ok(run_dbt(tmp_path, "run"))  # incrementally
    for layer, table in COMPARED:
        assert content(tmp_path, layer, table) == content(before, layer, table), table
    ok(run_dbt(tmp_path, "run", "--full-refresh"))  # and in one build
    for layer, table in COMPARED:
        assert content(tmp_path, layer, table) == content(before, layer, table), table


def test_a_snapshot_read_that_differs_from_the_last_change_is_a_new_version(tmp_path):
    """A change Debezium never streamed (its offsets were lost) shows up in the snapshot: silver follows it."""
    write_lake(tmp_path, {t: in_order(t) for t in TABLES})
    ok(run_dbt(tmp_path, "run"))
    batch = resnapshot_batch()
    (customer,) = [r for r in batch["customers"] if '"c@example.com"' in r["after"]]
    batch = {"customers": [customer | {"after": customer["after"].replace("c@example.com", "d@example.com")}]}
    write_batch(tmp_path, batch)
    ok(run_dbt(tmp_path, "run"))
    emails = sorted((r["valid_from"], r["email"]) for r in read(tmp_path, "silver", "int_customers_history")
                    if r["email"] in ("c@example.com", "d@example.com"))
    assert [e for _, e in emails] == ["c@example.com", "d@example.com"]
