"""`lakehouse` command line. Each area adds its sub-commands; user mistakes print one line, no traceback."""

from __future__ import annotations

import argparse
import sys

from pipelines.settings import SettingsError, load_settings


def _ingest_cdc(args: argparse.Namespace) -> int:
    from pipelines.cdc.ingest import CDC_STREAMS, follow_topics, ingest_topic, topic_for

    settings = load_settings()
    topics = [topic_for(settings, t) for t in (args.table or CDC_STREAMS)]
    if not args.table:  # every table the connector captures, also those added since the project was written
        from pipelines.cdc.discovery import ingestable, undeclared_source_topics, undeclared_topics_note

        undeclared = undeclared_source_topics(settings)
        if undeclared:
            print(f"warning: {undeclared_topics_note(undeclared)}", file=sys.stderr)
            topics += ingestable(undeclared)
    if args.follow:
        stop = _stop_on_signals()
        print(f"following {len(topics)} topics into {settings.lake_root}/bronze; Ctrl-C or SIGTERM to stop")
        for r in follow_topics(settings, topics, max_latency=args.max_latency, should_stop=stop.is_set):
            print(f"{r.topic}: read {r.records_read}, bronze {r.bronze_rows}, quarantined {r.quarantined}")
        return 0
    for topic in topics:
        r = ingest_topic(settings, topic)
        print(f"{topic}: read {r.records_read}, bronze {r.bronze_rows}, quarantined {r.quarantined}")
    return 0


def _stop_on_signals():
    """An event set by SIGINT/SIGTERM, so a follower commits what it holds before it exits."""
    import signal
    import threading

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def _materialize(args: argparse.Namespace) -> int:
    from pipelines.run import materialize_all

    return 0 if materialize_all(select=args.select).success else 1


def _run(args: argparse.Namespace) -> int:
    from pipelines.continuous import run_continuously

    stop = _stop_on_signals()
    if args.continuous:
        print(f"a cycle every {args.interval:g} s (bronze, then silver and gold); Ctrl-C or SIGTERM stops "
              "after the running cycle", flush=True)
    failed = run_continuously(args.interval, stop, lambda cycle: print(cycle.line(), flush=True),
                              cycles=None if args.continuous else 1)
    return 1 if failed else 0


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def _query(args: argparse.Namespace) -> int:
    from pipelines.analyst import open_lake, run_statements

    run_statements(open_lake(load_settings()), args.sql, max_rows=args.max_rows)
    return 0


def _shell(args: argparse.Namespace) -> int:
    from pipelines.analyst import interactive_shell

    failures = interactive_shell(load_settings())
    # a script piped in fails when a statement did; a person at the prompt saw each error already
    return 1 if failures and not sys.stdin.isatty() else 0


def _maintain(args: argparse.Namespace) -> int:
    from pipelines.maintenance import maintain_lake

    settings = load_settings()
    results = maintain_lake(settings)
    for r in results:
        print(r.summary(), file=sys.stdout if r.error is None else sys.stderr)
    print(f"{len(results)} tables, vacuum retention {settings.vacuum_retention_hours} h")
    return 1 if any(r.error for r in results) else 0


def _status(args: argparse.Namespace) -> int:
    from pipelines.status import UNHEALTHY, lake_status

    status = lake_status(load_settings())
    print(status.to_json() if args.json else status.report())
    return 0 if status.healthy else UNHEALTHY


def _demo(args: argparse.Namespace) -> int:
    from pipelines.demo import run_demo

    return run_demo(seed=args.seed, customers=args.customers, days=args.days)


def build_parser() -> argparse.ArgumentParser:
    from pipelines.cdc.cli import add_cdc_commands
    from pipelines.cdc.ingest import CDC_STREAMS
    from pipelines.stack.cli import add_stack_commands
    from pipelines.workload.cli import add_workload_commands

    parser = argparse.ArgumentParser(prog="lakehouse", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    add_stack_commands(commands)
    add_workload_commands(commands)
    add_cdc_commands(commands)

    ingest = commands.add_parser("ingest", help="ingest sources into bronze").add_subparsers(dest="source", required=True)
    cdc = ingest.add_parser("cdc", help="Debezium topics → bronze Delta, up to the topics' current end (or --follow)")
    cdc.add_argument(
        "--table", action="append", choices=CDC_STREAMS, help="source table or `transaction` (repeatable; default: all)"
    )
    cdc.add_argument("--follow", action="store_true", help="keep consuming until interrupted (low latency)")
    cdc.add_argument("--max-latency", type=float, default=1.0, help="with --follow: commit at least every N s")
    cdc.set_defaults(func=_ingest_cdc)

    materialize = commands.add_parser("materialize", help="run assets in this process, recorded in the Dagster instance")
    materialize.add_argument("--select", default="*", help="Dagster asset selection (default: everything)")
    materialize.set_defaults(func=_materialize)

    run = commands.add_parser(
        "run", help="one refresh: every CDC topic, the event days that changed, the incremental dbt build "
                    "(--continuous: again every --interval seconds)")
    run.add_argument("--continuous", action="store_true", help="keep refreshing until interrupted")
    run.add_argument("--interval", type=_positive_int, default=60, help="seconds from one cycle's start to the next (default 60)")
    run.set_defaults(func=_run)

    query = commands.add_parser("query", help="run SQL on a fresh DuckDB with a view per Delta table")
    query.add_argument("sql")
    query.add_argument("--max-rows", type=_positive_int, default=40, help="rows shown per result (default 40)")
    query.set_defaults(func=_query)
    commands.add_parser("shell", help="interactive DuckDB SQL over the lake's tables").set_defaults(func=_shell)
    commands.add_parser(
        "maintain", help="compact every Delta table and vacuum files older than vacuum_retention_hours"
    ).set_defaults(func=_maintain)

    status = commands.add_parser(
        "status", help="Kafka lag, last materializations, failed checks, rows put aside in 24 h; exit 2 if unhealthy")
    status.add_argument("--json", action="store_true", help="one JSON document, for monitoring")
    status.set_defaults(func=_status)

    demo = commands.add_parser("demo", help="stack up, workload, all assets, summary")
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--customers", type=int, default=200)
    demo.add_argument("--days", type=int, default=7)
    demo.set_defaults(func=_demo)
    return parser


def _user_errors() -> tuple[type[Exception], ...]:
    import duckdb
    from deltalake.exceptions import TableNotFoundError

    from lineage.client import LineageConfigError
    from pipelines.cdc.ingest import ConcurrentIngestError, DecodeWorkerError, KafkaTopicError, LakeWriteError
    from pipelines.events.objects import EventSourceError
    from pipelines.run import SelectionError
    from pipelines.stack.processes import StackError
    from quality.rules import RulesError

    return (SettingsError, StackError, KafkaTopicError, ConcurrentIngestError, DecodeWorkerError, LakeWriteError,
            duckdb.Error,
            SelectionError, RulesError, LineageConfigError, EventSourceError,
            TableNotFoundError)  # a lake root that cannot hold a table (a file, no permission)


def main(argv: list[str] | None = None) -> int:
    import warnings

    # Dagster flags options it calls beta (single-run backfills) when the definitions load: noise here
    warnings.filterwarnings("ignore", message=".*is currently in beta.*")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except _user_errors() as exc:
        print(f"lakehouse {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
