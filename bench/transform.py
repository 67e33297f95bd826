"""Benchmark (issue 6): the dbt silver/gold build against a hand-written DuckDB script, at N orders.

    .venv/bin/python bench/transform.py [--orders 1000000] [--stages baseline,full,baseline]

In a temp lake, writes a synthetic bronze (bench/transform_bronze.py: the seven CDC tables and the
business events, exactly as the ingestion writes them) for N orders, then in the same run measures,
each as its own process (wall time and that process's peak RSS):

  baseline     bench/transform_baseline.sql: the same gold tables from the same bronze, by hand, in one
               DuckDB connection, each written to Delta with write_deltalake (in a separate directory)
  full         `dbt run` of the whole project (every staging, intermediate and mart model) on a lake
               with bronze only
  incremental  after appending "1% new data" to bronze (new orders on a later day, updates of ~1% of
               the orders, customers and products), `dbt run` again on the lake the full build left;
               then the baseline again on the grown bronze

After the full build and after the incremental run, every gold table dbt wrote must equal the
baseline's, row for row (both sorted by the table's key, Arrow schema and values compared exactly), so
the baseline is proven to compute the same thing.

Prints the ratios and writes bench/results/transform.json: `ratio` (full build / best baseline) and
`incremental_ratio` (incremental run / full build). Targets: ratio <= 1.5, incremental_ratio <= 0.10.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from _measure import ChildRun, machine, run_child, stages_from, utc_timestamp, write_result  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "transform.json"
DBT_PROJECT = ROOT / "dbt_project"
DBT = str(Path(sys.executable).parent / "dbt")
BASELINE_SQL = Path(__file__).resolve().parent / "transform_baseline.sql"
DBT_COMMAND = ["run"]

# The gold tables compared, each with the columns that identify a row (the order both sides are sorted
# in). Comparing one more mart: add it here and a `gold_<name>` view to transform_baseline.sql.
GOLD_TABLES: dict[str, list[str]] = {
    "fct_orders": ["order_version_key"],
    "fct_order_items": ["order_item_id"],
    "dim_customers": ["customer_version_key"],
    "dim_products": ["product_id"],
    "dim_date": ["date_day"],
    "agg_daily_sales": ["order_date"],
    "agg_hourly_revenue": ["order_hour"],
    "customer_features": ["customer_id"],
    "agg_daily_funnel": ["funnel_date"],
}

# columns that record when a run wrote the row (incremental marts keep it as their watermark): not part of
# what a gold table says, and the baseline does not produce them
RUN_COLUMNS = ("processed_at",)


class GoldMismatch(Exception):
    """dbt's gold differs from the baseline's: the baseline (or a model) computes something else."""


# ------------------------------------------------------------------------------------------------------
# baseline (child process)
# ------------------------------------------------------------------------------------------------------
def dbt_vars() -> dict:
    import yaml

    return yaml.safe_load((DBT_PROJECT / "dbt_project.yml").read_text())["vars"]


def child_baseline(lake: str, gold: str) -> dict:
    from deltalake import write_deltalake
    from transform_bronze import RowCounter

    from pipelines.lake import connect

    variables = dbt_vars()
    script = BASELINE_SQL.read_text()
    for name, value in {"bronze": f"{lake}/bronze", "dim_date_start": variables["dim_date_start"],
                        "dim_date_end": variables["dim_date_end"]}.items():
        script = script.replace("{" + name + "}", str(value))
    started = time.perf_counter()
    conn = connect()
    conn.execute(script)
    seconds = {"prepare": round(time.perf_counter() - started, 3)}
    rows = {}
    for name in GOLD_TABLES:
        at = time.perf_counter()
        counter = RowCounter(conn.sql(f"select * from gold_{name}").to_arrow_reader(batch_size=100_000))
        write_deltalake(f"{gold}/{name}", counter.reader(), mode="overwrite")
        rows[name] = counter.rows
        seconds[name] = round(time.perf_counter() - at, 3)
    return {"rows": rows, "step_seconds": seconds}


def child_generate(lake: str, orders: str, phase: str) -> dict:
    from transform_bronze import Scale, write_bronze

    return write_bronze(lake, Scale(int(orders)), int(phase))


# ------------------------------------------------------------------------------------------------------
# stages (parent)
# ------------------------------------------------------------------------------------------------------
def run_python_child(kind: str, *args) -> tuple[ChildRun, dict]:
    """This script in a child process (`--child KIND ARGS`); returns its run and the JSON it printed.
    The parent imports no DuckDB or Arrow: a child's peak RSS would include the parent's, since Linux
    keeps the pre-exec high-water mark."""
    run = run_child([sys.executable, str(Path(__file__).resolve()), "--child", kind, *map(str, args)],
                    env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    if run.returncode != 0:
        raise RuntimeError(f"{kind} failed ({run.returncode}):\n{run.stderr[-4000:]}")
    return run, json.loads(run.stdout.strip().splitlines()[-1])


def run_baseline(lake: Path, gold: Path) -> tuple[ChildRun, dict]:
    shutil.rmtree(gold, ignore_errors=True)
    return run_python_child("baseline", lake, gold)


def run_dbt(data_dir: Path, lake: Path) -> tuple[ChildRun, dict]:
    env = {**os.environ, "LAKEHOUSE_DATA_DIR": str(data_dir), "LAKEHOUSE_LAKE_ROOT": str(lake),
           "PYTHONPATH": str(ROOT), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    env.pop("LAKEHOUSE_CONFIG", None)
    target = data_dir / "dbt-target"
    # target and logs in the temp dir: dbt_project/target belongs to whoever else runs dbt on this tree
    cmd = [DBT, *DBT_COMMAND, "--project-dir", str(DBT_PROJECT), "--profiles-dir", str(DBT_PROJECT),
           "--target-path", str(target), "--log-path", str(data_dir / "dbt-logs")]
    run = run_child(cmd, env=env, cwd=DBT_PROJECT)
    if run.returncode != 0:
        raise RuntimeError(f"dbt failed ({run.returncode}):\n{run.stdout[-6000:]}\n{run.stderr[-2000:]}")
    results = json.loads((target / "run_results.json").read_text())
    models = {r["unique_id"].split(".")[-1]: round(r["execution_time"], 2) for r in results["results"]}
    return run, {"models": models, "dbt_elapsed": round(results["elapsed_time"], 2)}


def compare_gold(dbt_gold: str, baseline_gold: str) -> dict[str, int]:
    """Row counts of the gold tables, after checking dbt's equal the baseline's exactly."""
    from deltalake import DeltaTable

    counts = {}
    for name, key in GOLD_TABLES.items():
        order = [(column, "ascending") for column in key]
        ours, theirs = (_without_run_columns(DeltaTable(str(root / name)).to_pyarrow_table()).sort_by(order)
                        for root in (Path(dbt_gold), Path(baseline_gold)))
        if not ours.schema.equals(theirs.schema):
            raise GoldMismatch(f"gold.{name}: dbt schema\n{ours.schema}\n!= baseline schema\n{theirs.schema}")
        if not ours.equals(theirs):
            raise GoldMismatch(f"gold.{name}: dbt has {ours.num_rows} rows, baseline {theirs.num_rows}; "
                               f"first differences: {_first_differences(ours, theirs)}")
        counts[name] = ours.num_rows
    return counts


def _without_run_columns(table):
    return table.drop_columns([c for c in RUN_COLUMNS if c in table.column_names])


def _first_differences(ours, theirs, limit: int = 3) -> list:
    out = []
    for i, (a, b) in enumerate(zip(ours.to_pylist(), theirs.to_pylist())):
        if a != b:
            out.append({"row": i, "dbt": {k: v for k, v in a.items() if v != b.get(k)},
                        "baseline": {k: v for k, v in b.items() if v != a.get(k)}})
            if len(out) == limit:
                break
    return out


def dbt_project_state() -> dict:
    """The commit the models come from, and which of their files differ from it (others edit this tree)."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "--short", "HEAD"),
            "uncommitted": git("status", "--porcelain", "--", "dbt_project/models", "dbt_project/macros").splitlines()}


def unmatched_marts() -> list[str]:
    marts = sorted(p.stem for p in (DBT_PROJECT / "models" / "marts").glob("*.sql"))
    return [m for m in marts if m not in GOLD_TABLES]


def _slowest(models: dict[str, float], n: int = 8) -> dict[str, float]:
    return dict(sorted(models.items(), key=lambda item: -item[1])[:n])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--stages", default="baseline,full,baseline",
                        help="order of the full-build measurements (baseline|full; best of each counts); "
                             "the incremental run and a last baseline always follow")
    parser.add_argument("--output", default=str(RESULTS), help="result JSON ('-' = do not write)")
    parser.add_argument("--keep", action="store_true", help="keep the temp lake and print where it is")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *child_args = args.child
        children = {"baseline": child_baseline, "generate": child_generate, "compare": compare_gold}
        print(json.dumps(children[kind](*child_args)))
        return 0
    stages = stages_from(parser, args.stages, {"baseline", "full"}, require_all=True)
    missing = unmatched_marts()
    if missing:
        print(f"warning: marts not compared (add them to GOLD_TABLES and the baseline): {missing}", flush=True)

    project_state = dbt_project_state()
    tmp = Path(tempfile.mkdtemp(prefix="bench-transform-"))
    lake, baseline_gold = tmp / "lake", tmp / "baseline" / "gold"
    try:
        generated, bronze_rows = run_python_child("generate", lake, args.orders, 0)
        generate_seconds = generated.seconds
        print(f"bronze for {args.orders:,} orders: {sum(bronze_rows.values()):,} rows in {generate_seconds:.1f} s "
              f"{bronze_rows}", flush=True)

        runs: dict[str, list[dict]] = {"baseline": [], "full": []}
        for stage in stages:
            if stage == "baseline":
                run, out = run_baseline(lake, baseline_gold)
                runs["baseline"].append({"seconds": run.seconds, "peak_rss_bytes": run.peak_rss_bytes, **out})
            else:
                shutil.rmtree(lake / "silver", ignore_errors=True)
                shutil.rmtree(lake / "gold", ignore_errors=True)
                run, out = run_dbt(tmp, lake)
                runs["full"].append({"seconds": run.seconds, "peak_rss_bytes": run.peak_rss_bytes, **out})
            print(f"  {stage:12s} {run.seconds:8.1f} s   peak RSS {run.peak_rss_bytes / 2**20:,.0f} MiB", flush=True)
        gold_rows = run_python_child("compare", lake / "gold", baseline_gold)[1]
        print(f"  gold after the full build equals the baseline's: {gold_rows}", flush=True)

        generated, increment_rows = run_python_child("generate", lake, args.orders, 1)
        print(f"increment: {sum(increment_rows.values()):,} rows in {generated.seconds:.1f} s "
              f"{increment_rows}", flush=True)
        incremental, incremental_out = run_dbt(tmp, lake)
        print(f"  {'incremental':12s} {incremental.seconds:8.1f} s   peak RSS "
              f"{incremental.peak_rss_bytes / 2**20:,.0f} MiB", flush=True)
        after, after_out = run_baseline(lake, baseline_gold)
        print(f"  {'baseline':12s} {after.seconds:8.1f} s   (after the increment)", flush=True)
        gold_rows_after = run_python_child("compare", lake / "gold", baseline_gold)[1]
        print(f"  gold after the incremental run equals the baseline's: {gold_rows_after}", flush=True)

        best_baseline = min(r["seconds"] for r in runs["baseline"])
        best_full = min(r["seconds"] for r in runs["full"])
        last_full = runs["full"][-1]
        result = {
            "ratio": round(best_full / best_baseline, 4),
            "incremental_ratio": round(incremental.seconds / best_full, 4),
            "orders": args.orders,
            "full_build_seconds": round(best_full, 2),
            "baseline_seconds": round(best_baseline, 2),
            "incremental_seconds": round(incremental.seconds, 2),
            "baseline_after_increment_seconds": round(after.seconds, 2),
            "dbt_command": "dbt " + " ".join(DBT_COMMAND),
            "machine": machine(),
            "timestamp": utc_timestamp(),
            "rows": {"bronze": bronze_rows, "increment": increment_rows, "gold": gold_rows,
                     "gold_after_increment": gold_rows_after},
            "details": {
                "stages": stages,
                "baseline_runs_seconds": [round(r["seconds"], 2) for r in runs["baseline"]],
                "full_runs_seconds": [round(r["seconds"], 2) for r in runs["full"]],
                "baseline_peak_rss_bytes": max(r["peak_rss_bytes"] for r in runs["baseline"]),
                "full_peak_rss_bytes": max(r["peak_rss_bytes"] for r in runs["full"]),
                "incremental_peak_rss_bytes": incremental.peak_rss_bytes,
                "baseline_step_seconds": runs["baseline"][-1]["step_seconds"],
                "full_dbt_elapsed_seconds": last_full["dbt_elapsed"],
                "full_slowest_models_seconds": _slowest(last_full["models"]),
                "full_models": len(last_full["models"]),
                "incremental_dbt_elapsed_seconds": incremental_out["dbt_elapsed"],
                "incremental_slowest_models_seconds": _slowest(incremental_out["models"]),
                "generate_seconds": round(generate_seconds, 1),
                "gold_compared": list(GOLD_TABLES),
                "dbt_project": project_state,
                "target": "ratio <= 1.5 and incremental_ratio <= 0.10",
            },
        }
        print()
        print(f"baseline (hand-written SQL):  {best_baseline:8.1f} s")
        print(f"full build ({result['dbt_command']}):      {best_full:8.1f} s   slowest models: "
              f"{result['details']['full_slowest_models_seconds']}")
        print(f"incremental (after +1%):      {incremental.seconds:8.1f} s")
        print(f"ratio full/baseline:          {result['ratio']:.3f}   "
              f"({'PASS' if result['ratio'] <= 1.5 else 'FAIL'}: target <= 1.5)")
        print(f"incremental_ratio incr/full:  {result['incremental_ratio']:.3f}   "
              f"({'PASS' if result['incremental_ratio'] <= 0.10 else 'FAIL'}: target <= 0.10)")
        write_result(args.output, result)
        return 0
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
