"""`make demo`: the whole path on the local stack, then a summary a newcomer can read."""

from __future__ import annotations

from contextlib import redirect_stdout

import psycopg

from pipelines import lake
from pipelines.analyst import open_lake
from pipelines.run import materialize_all
from pipelines.settings import Settings, load_settings
from pipelines.stack import Stack
from pipelines.stack.capture import wait_until_captured
from pipelines.workload.writer import run_workload


def _source_has_orders(settings: Settings) -> bool:
    with psycopg.connect(settings.postgres_dsn) as conn:
        return conn.execute("select exists (select 1 from orders)").fetchone()[0]


def _print_lake_summary(settings: Settings) -> None:
    conn = open_lake(settings)
    print("\nrows per table:")
    for layer in lake.LAYERS:
        for table in lake.delta_tables(settings, layer):
            n = conn.sql(f'select count(*) from {layer}."{table}"').fetchone()[0]
            print(f"  {layer:7} {table:28} {n:>9}")
    print("\ngold.agg_daily_sales:")
    conn.sql("select * from gold.agg_daily_sales order by order_date").show(max_rows=20)


def run_demo(seed: int, customers: int, days: int) -> int:
    print("1/4 starting the local stack (Postgres, Kafka, Debezium, S3)")
    stack = Stack()
    stack.up()
    settings = load_settings()  # now with the stack's ports
    if _source_has_orders(settings):
        print("2/4 the shop database already has a workload; keeping it (`make clean` starts over)")
    else:
        print(f"2/4 simulating {days} days of the shop: seed {seed}, {customers} customers")
        print(run_workload(settings, seed=seed, customers=customers, days=days).format())
    print("3/4 waiting until Debezium has captured every committed change")
    wait_until_captured(settings)
    # dagster-dbt echoes each of dbt's ~900 log lines to stdout: kept in a file, the summary stays readable
    log_file = settings.data_dir / "logs" / "demo-materialize.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    print(f"4/4 materializing every asset (bronze → silver → gold) with their checks; dbt's output: {log_file}")
    with log_file.open("w") as log, redirect_stdout(log):
        result = materialize_all(log_level="WARNING")
    checks = result.check_evaluations()
    failed = [c for c in checks if not c.passed]
    materialized = result.materializations()
    _print_lake_summary(settings)
    print(f"\nassets materialized: {len({m.asset_key for m in materialized})} ({len(materialized)} asset partitions); "
          f"checks passed: {len(checks) - len(failed)}/{len(checks)}")
    for check in failed:
        print(f"  FAILED {check.asset_key.to_user_string()}:{check.check_name}")
    print("\nOpen the Dagster UI with `make ui` (http://127.0.0.1:3000): the runs above are in its history.")
    print('Query the lake: .venv/bin/lakehouse query "select * from gold.agg_daily_sales"')
    print("Stop the stack with `make stack-down`.")
    return 0 if result.success and not failed else 1
