"""Benchmark (issue 16): how far gold lags behind Postgres in continuous mode under a sustained workload.

    .venv/bin/python bench/continuous_lag.py [--minutes 10] [--orders-per-minute 30] [--interval 30]

Starts the local stack (Postgres, Kafka, Connect + Debezium, S3) in a temp data dir and runs
`lakehouse run --continuous` against it. For --minutes, the shop writes one slice a minute: a simulated
day of the workload at the rate that gives --orders-per-minute orders (with their customers, items,
payments, shipments and events), each slice with its own seed. After each cycle the benchmark reads which
order versions gold.fct_orders holds that it did not before; the lag of each is the end of that cycle
minus the version's commit time in Postgres (`valid_from`, Debezium's source timestamp): an upper
bound, since the row was visible from the commit of fct_orders, before the cycle's last checks.

Writes bench/results/continuous_lag.json and copies `lag_p50_s`, `lag_p95_s` and the continuous run's
peak RSS into bench/results/transform.json. Targets: p95 under 300 s, p50 under 120 s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from _measure import machine, utc_timestamp, write_result  # noqa: E402

RESULTS = ROOT / "bench" / "results"
LAKEHOUSE = str(Path(sys.executable).parent / "lakehouse")


def tree_peak_rss(pid: int) -> int:
    """VmHWM of a process and its descendants (the dbt subprocess of each cycle)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM:"))
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(p) for p in (task / "children").read_text().split()]
        except (OSError, StopIteration):
            pass  # gone meanwhile
    return total


def write_shop(settings, minutes: int, orders_per_minute: int, stop: threading.Event, slices: list[dict]) -> None:
    from pipelines.workload.writer import run_workload

    started = time.monotonic()
    for i in range(minutes):
        if stop.is_set():
            return
        at = time.monotonic()
        summary = run_workload(settings, seed=5000 + i, customers=max(2, orders_per_minute // 4), days=1,
                               rate=orders_per_minute / 24, start=datetime(2026, 6, 1, tzinfo=UTC) + timedelta(days=i))
        slices.append({"slice": i, "seconds": round(time.monotonic() - at, 2), "summary": summary.format()})
        stop.wait(max(0.0, started + 60 * (i + 1) - time.monotonic()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--orders-per-minute", type=int, default=30)
    parser.add_argument("--interval", type=int, default=30, help="seconds between cycle starts")
    parser.add_argument("--output", default=str(RESULTS / "continuous_lag.json"), help="result JSON ('-' = none)")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="bench-continuous-"))
    os.environ["LAKEHOUSE_DATA_DIR"] = str(data_dir)
    from pipelines.analyst import open_lake
    from pipelines.settings import load_settings
    from pipelines.stack import Stack
    from pipelines.stack.capture import wait_until_captured

    stack = Stack(load_settings())
    stack.up()
    settings = load_settings()
    process = subprocess.Popen([LAKEHOUSE, "run", "--continuous", "--interval", str(args.interval)],
                               env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stop, slices, cycles, lags, peak = threading.Event(), [], [], [], 0
    shop = threading.Thread(target=write_shop, args=(settings, args.minutes, args.orders_per_minute, stop, slices))
    try:
        seen: set[str] = set()
        shop.start()
        done_writing_at = None
        for line in process.stdout:
            print(line.rstrip(), flush=True)
            peak = max(peak, tree_peak_rss(process.pid))
            if not line.startswith("cycle "):
                continue
            started = datetime.fromisoformat(line.split(" started ")[1].split(": ")[0])
            seconds = float(line.split(" in ")[1].split(" s")[0])
            ended = started + timedelta(seconds=seconds)
            cycles.append({"started": started.isoformat(), "seconds": seconds, "ok": ": ok in " in line})
            rows = open_lake(settings).sql("select order_version_key, valid_from from gold.fct_orders").fetchall()
            new = [(key, valid_from) for key, valid_from in rows if key not in seen]
            seen.update(key for key, _ in new)
            lags += [(ended - valid_from).total_seconds() for _, valid_from in new]
            if not shop.is_alive() and done_writing_at is None:
                wait_until_captured(settings)
                done_writing_at = datetime.now(UTC)
            if done_writing_at and started > done_writing_at:
                break  # a whole cycle after the last write: everything is in gold
    finally:
        stop.set()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=900)
        shop.join(timeout=120)
        stack.down(purge=True)

    quantiles = statistics.quantiles(lags, n=100) if len(lags) >= 2 else [float("nan")] * 99
    result = {
        "lag_p50_s": round(statistics.median(lags), 1),
        "lag_p95_s": round(quantiles[94], 1),
        "peak_rss_bytes": peak,
        "order_versions_measured": len(lags),
        "orders_per_minute": args.orders_per_minute,
        "minutes": args.minutes,
        "interval_s": args.interval,
        "cycle_seconds_p50": round(statistics.median(c["seconds"] for c in cycles), 1),
        "cycles": cycles,
        "slices": slices,
        "machine": machine(),
        "timestamp": utc_timestamp(),
        "target": "lag_p95_s < 300, lag_p50_s < 120",
    }
    print(f"lag p50 {result['lag_p50_s']} s, p95 {result['lag_p95_s']} s over {len(lags)} order versions; "
          f"cycle p50 {result['cycle_seconds_p50']} s; peak RSS {peak / 2**30:.2f} GiB")
    write_result(args.output, result)
    if args.output != "-":
        transform = RESULTS / "transform.json"
        merged = json.loads(transform.read_text()) if transform.exists() else {}
        merged.update({"lag_p50_s": result["lag_p50_s"], "lag_p95_s": result["lag_p95_s"],
                       "continuous_peak_rss_bytes": peak})
        write_result(str(transform), merged)
    return 0


if __name__ == "__main__":
    sys.exit(main())
