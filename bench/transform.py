"""Benchmark (issues 6 and 16): the dbt silver/gold build, full and incremental, at N orders.

    .venv/bin/python bench/transform.py [--orders 1000000] [--scale 3] [--stages baseline,full,baseline]

In a temp lake, writes a synthetic bronze (bench/transform_bronze.py: the seven CDC tables and the
business events, exactly as the ingestion writes them), then in the same run measures, each as its own
process (wall time and that process's peak RSS):

  baseline     bench/transform_baseline.sql: the same gold tables from the same bronze, by hand, in one
               DuckDB connection, each written to Delta with write_deltalake (in a separate directory)
  full         `dbt run` of the whole project (every staging, intermediate and mart model) on a lake
               of N orders over 59 days (phase 2), bronze only
  hourly       the shop's next hour on that lake (phase 3: the hour's orders, the shipments and
               deliveries of orders placed days before, rare customer and product changes, the hour's
               events), then `dbt run` on the lake the full build left: the realistic increment
  worst case   "1% new data" spread over all keys (phase 1: updates of ~1% of all orders, customers and
               products, N/100 new orders), `dbt run` again
  scale        the same hour on a lake `--scale` times larger (that many times the orders over that many
               times the days, so the hour holds as many changes): full build, then the hour

After the full build and after each increment, every gold table dbt wrote must equal the baseline's, row
for row (both sorted by the table's key, Arrow schema and values compared exactly).

Writes bench/results/transform.json: `ratio` (full build / best baseline), `incremental_ratio` (hourly
run / full build), `worst_case_ratio` (worst-case run / full build), `scale_ratio` (hourly run on the
larger lake / on this one), `peak_rss_bytes` (of any run). Targets (issue 16): incremental_ratio <= 0.10,
scale_ratio <= 1.3, worst_case_ratio <= 0.25, ratio <= 1.3, peak RSS < 8 GiB.
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


def child_generate(lake: str, orders: str, days: str, phase: str) -> dict:
    from transform_bronze import Scale, write_bronze

    return write_bronze(lake, Scale(int(orders), int(days)), int(phase))


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
    parser.add_argument("--days", type=int, default=60, help="days of orders in the lake (the cut is a day before the end)")
    parser.add_argument("--scale", type=int, default=3, help="how many times larger the lake of the scale run is (0: skip it)")
    parser.add_argument("--stages", default="baseline,full,baseline",
                        help="order of the full-build measurements (baseline|full; best of each counts); "
                             "the increments always follow")
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
    try:
        lake = Lake(tmp / "base", args.orders, args.days)
        bronze_rows = lake.generate(LAKE)
        runs: dict[str, list[dict]] = {"baseline": [], "full": []}
        for stage in stages:
            runs[stage].append(lake.baseline() if stage == "baseline" else lake.full_build())
        gold_rows = lake.compare()
        hourly = lake.increment(HOUR, "hourly")
        worst = lake.increment(WORST_CASE, "worst case")
        scaled = None
        # what is measured so far, in case the larger lake does not get through
        write_result(args.output, _with_continuous_lag(args.output, _result(args, runs, hourly, worst, None, gold_rows, bronze_rows, project_state, stages)))
        if args.scale:
            bigger = Lake(tmp / "scaled", args.orders * args.scale, args.days * args.scale)
            bigger.generate(LAKE)
            scaled_full = bigger.full_build()
            scaled = bigger.increment(HOUR, f"hourly at {args.scale}x")
            scaled["full_build_peak_rss_bytes"] = scaled_full["peak_rss_bytes"]
            shutil.rmtree(bigger.root, ignore_errors=True)

        result = _result(args, runs, hourly, worst, scaled, gold_rows, bronze_rows, project_state, stages)
        print()
        for name, value, target in [("ratio full/baseline", result["ratio"], 1.3),
                                    ("incremental_ratio hourly/full", result["incremental_ratio"], 0.10),
                                    ("worst_case_ratio 1%/full", result["worst_case_ratio"], 0.25),
                                    ("scale_ratio hourly 3x/1x", result["scale_ratio"], 1.3)]:
            if value is not None:
                print(f"{name:32s} {value:.3f}   ({'PASS' if value <= target else 'FAIL'}: target <= {target})")
        print(f"{'peak RSS':32s} {result['peak_rss_bytes'] / 2**30:.2f} GiB")
        write_result(args.output, _with_continuous_lag(args.output, result))
        return 0
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _result(args, runs, hourly, worst, scaled, gold_rows, bronze_rows, project_state, stages) -> dict:
    best_baseline = min(r["seconds"] for r in runs["baseline"])
    best_full = min(r["seconds"] for r in runs["full"])
    measured = runs["baseline"] + runs["full"] + [hourly, worst] + ([scaled] if scaled else [])
    result = {
        "ratio": round(best_full / best_baseline, 4),
        "incremental_ratio": round(hourly["seconds"] / best_full, 4),
        "worst_case_ratio": round(worst["seconds"] / best_full, 4),
        "scale_ratio": round(scaled["seconds"] / hourly["seconds"], 4) if scaled else None,
        # the larger lake's full build counts too: it is the largest run
    "peak_rss_bytes": max([r["peak_rss_bytes"] for r in measured] + ([scaled["full_build_peak_rss_bytes"]] if scaled else [])),
        "orders": args.orders,
        "days": args.days,
        "full_build_seconds": round(best_full, 2),
        "baseline_seconds": round(best_baseline, 2),
        "incremental_seconds": hourly["seconds"],
        "worst_case_seconds": worst["seconds"],
        "scaled_incremental_seconds": scaled["seconds"] if scaled else None,
        "dbt_command": "dbt " + " ".join(DBT_COMMAND),
        "machine": machine(),
        "timestamp": utc_timestamp(),
        "rows": {"bronze": bronze_rows, "gold": gold_rows, "hourly": hourly["rows"],
                 "worst_case": worst["rows"], "scaled_hourly": scaled["rows"] if scaled else None},
        "details": {
            "stages": stages,
            "baseline_runs_seconds": [r["seconds"] for r in runs["baseline"]],
            "full_runs_seconds": [r["seconds"] for r in runs["full"]],
            "baseline_step_seconds": runs["baseline"][-1]["step_seconds"],
            "full_dbt_elapsed_seconds": runs["full"][-1]["dbt_elapsed"],
            "full_slowest_models_seconds": _slowest(runs["full"][-1]["models"]),
            "hourly": _increment_details(hourly),
            "worst_case": _increment_details(worst),
            "scaled_hourly": _increment_details(scaled) if scaled else None,
            "gold_compared": list(GOLD_TABLES),
            "dbt_project": project_state,
            "target": "incremental_ratio <= 0.10, scale_ratio <= 1.3, worst_case_ratio <= 0.25, ratio <= 1.3, "
                      "peak_rss_bytes < 8 GiB",
        },
    }
    return result


# the phases of bench/transform_bronze.py
WORST_CASE, LAKE, HOUR = 1, 2, 3


class Lake:
    """One temp lake of the benchmark: its bronze phases, the dbt runs on it, and the baseline beside it."""

    def __init__(self, root: Path, orders: int, days: int):
        self.root, self.orders, self.days = root, orders, days
        self.lake, self.baseline_gold = root / "lake", root / "baseline" / "gold"

    def generate(self, phase: int) -> dict:
        run, rows = run_python_child("generate", self.lake, self.orders, self.days, phase)
        print(f"{self.orders:,} orders, phase {phase}: {sum(rows.values()):,} bronze rows in {run.seconds:.1f} s "
              f"{rows}", flush=True)
        return rows

    def baseline(self) -> dict:
        run, out = run_baseline(self.lake, self.baseline_gold)
        return self._report("baseline", run, out)

    def full_build(self) -> dict:
        shutil.rmtree(self.lake / "silver", ignore_errors=True)
        shutil.rmtree(self.lake / "gold", ignore_errors=True)
        run, out = run_dbt(self.root, self.lake)
        return self._report("full", run, out)

    def increment(self, phase: int, name: str) -> dict:
        rows = self.generate(phase)
        run, out = run_dbt(self.root, self.lake)
        measured = self._report(name, run, out)
        self.baseline()
        self.compare()
        return {**measured, "rows": rows}

    def compare(self) -> dict:
        rows = run_python_child("compare", self.lake / "gold", self.baseline_gold)[1]
        print(f"  gold equals the baseline's: {rows}", flush=True)
        return rows

    @staticmethod
    def _report(name: str, run: ChildRun, out: dict) -> dict:
        print(f"  {name:16s} {run.seconds:8.1f} s   peak RSS {run.peak_rss_bytes / 2**20:,.0f} MiB", flush=True)
        return {"seconds": round(run.seconds, 2), "peak_rss_bytes": run.peak_rss_bytes, **out}


def _with_continuous_lag(output: str, result: dict) -> dict:
    """The result, with the lag fields bench/continuous_lag.py keeps in the same file."""
    path = Path(output)
    if output == "-" or not path.exists():
        return result
    previous = json.loads(path.read_text())
    return result | {k: previous[k] for k in ("lag_p50_s", "lag_p95_s", "continuous_peak_rss_bytes") if k in previous}


def _increment_details(run: dict) -> dict:
    return {"dbt_elapsed_seconds": run["dbt_elapsed"], "slowest_models_seconds": _slowest(run["models"]),
            "peak_rss_bytes": run["peak_rss_bytes"]}


if __name__ == "__main__":
    sys.exit(main())
