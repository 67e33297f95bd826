"""`lakehouse workload run` (argparse), added to the main CLI by `add_workload_commands`."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from pipelines.workload.simulation import DEFAULT_RATE, DEFAULT_START


def _start_date(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _run(args: argparse.Namespace) -> int:
    from pipelines.settings import SettingsError, load_settings
    from pipelines.workload.model import WorkloadError
    from pipelines.workload.writer import run_workload

    try:
        summary = run_workload(
            load_settings(),
            seed=args.seed,
            customers=args.customers,
            days=args.days,
            rate=args.rate,
            start=args.start,
            events_dir=args.events_dir,
        )
    except (WorkloadError, SettingsError) as exc:
        print(f"workload: {exc}", file=sys.stderr)
        sys.exit(1)
    print(summary.format())
    return 0


def add_workload_commands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `workload run`; the sub-command sets `func(args) -> exit code`."""
    workload = subparsers.add_parser("workload", help="simulated shop writing to Postgres and raw events")
    commands = workload.add_subparsers(dest="workload_command", metavar="{run}", required=True)
    run = commands.add_parser(
        "run",
        help="simulate D days of the shop: SQL transactions into Postgres, business events to S3",
        description="Deterministic: the same seed and flags give the same rows, keys and events. Runs with "
        "different seeds add to the same database without colliding.",
    )
    run.add_argument("--seed", type=int, required=True, help="seed of every random choice and key")
    run.add_argument("--customers", type=int, required=True, help="customers who register during the run")
    run.add_argument("--days", type=int, required=True, help="simulated days")
    run.add_argument(
        "--rate", type=float, default=DEFAULT_RATE, help=f"mean orders per simulated hour (default {DEFAULT_RATE})"
    )
    run.add_argument(
        "--start",
        type=_start_date,
        default=DEFAULT_START,
        help=f"first simulated day, UTC midnight (default {DEFAULT_START:%Y-%m-%d})",
    )
    run.add_argument(
        "--events-dir",
        type=Path,
        default=None,
        help="write events under this folder (same year=/month=/day= layout) instead of S3",
    )
    run.set_defaults(func=_run)
    return workload
