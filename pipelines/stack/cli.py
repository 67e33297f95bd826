"""`lakehouse stack up|down|status|install|stop|start|restart` (argparse), added to the main CLI by `add_stack_commands`."""

from __future__ import annotations

import argparse
import sys
import time

from pipelines.settings import load_settings


# pipelines.stack.COMPONENTS, spelled out: importing the stack (its Kafka, S3 and Postgres clients) would
# add 0.6 s to every `lakehouse` command, since the parser is built before any command runs
COMPONENT_NAMES = ("postgres", "kafka", "s3", "connect")


def _stack():
    from pipelines.stack import Stack

    return Stack(load_settings())


def _print_status(status: dict) -> None:
    if not status:
        print("stack: not running")
        return
    for name, info in status.items():
        port = info.get("port", info.get("rest_port"))
        health = "healthy" if info["healthy"] else "UNHEALTHY"
        print(f"{name:9} port {port:<6} pid {info.get('pid'):<8} {health:9} {info['detail']}")


def _up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    stack = _stack()
    stack.up()
    _print_status(stack.status())
    print(f"stack up in {time.monotonic() - started:.1f} s; logs in {stack.dir / 'logs'}")
    return 0


def _down(args: argparse.Namespace) -> int:
    stack = _stack()
    stopped = stack.down(purge=args.purge)
    print(f"stack down: stopped {len(stopped)} process(es){'; deleted ' + str(stack.dir) if args.purge else ''}")
    return 0


def _status(args: argparse.Namespace) -> int:
    status = _stack().status()
    _print_status(status)
    return 0 if status and all(info["healthy"] for info in status.values()) else 1


def _stop(args: argparse.Namespace) -> int:
    _stack().stop(args.component, kill=args.kill)
    print(f"stack: {args.component} {'killed' if args.kill else 'stopped'} (data and port kept; "
          f"`lakehouse stack start {args.component}` brings it back)")
    return 0


def _start(args: argparse.Namespace) -> int:
    started = time.monotonic()
    stack = _stack()
    stack.start(args.component)
    _print_status(stack.status())
    print(f"stack: {args.component} up in {time.monotonic() - started:.1f} s")
    return 0


def _restart(args: argparse.Namespace) -> int:
    started = time.monotonic()
    stack = _stack()
    stack.restart(args.component, kill=args.kill)
    _print_status(stack.status())
    print(f"stack: {args.component} restarted in {time.monotonic() - started:.1f} s")
    return 0


def _install(args: argparse.Namespace) -> int:
    started = time.monotonic()
    stack = _stack()
    done = stack.install(force=args.force)
    what = ", ".join(done) if done else "nothing (jars current)"
    print(f"stack install: {what} in {time.monotonic() - started:.1f} s -> {stack.jars}")
    return 0


def _run(handler):
    def wrapped(args: argparse.Namespace) -> int:
        from pipelines.stack.processes import StackError

        try:
            return handler(args)
        except StackError as exc:
            print(f"stack: {exc}", file=sys.stderr)
            sys.exit(1)

    return wrapped


def add_stack_commands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `stack up|down|status|install`; each sub-command sets `func(args) -> exit code`."""
    stack = subparsers.add_parser("stack", help="local Postgres, Kafka, Debezium and S3 (start/stop/health)")
    commands = stack.add_subparsers(dest="stack_command", metavar="{up,down,status,stop,start,restart,install}",
                                    required=True)
    commands.add_parser("up", help="start every component (idempotent), wait until healthy").set_defaults(func=_run(_up))
    down = commands.add_parser("down", help="stop the processes the stack started")
    down.add_argument("--purge", action="store_true", help="also delete <data_dir>/stack (jars stay)")
    down.set_defaults(func=_run(_down))
    commands.add_parser("status", help="each component, its port and health (exit 1 unless all healthy)").set_defaults(
        func=_run(_status)
    )
    kill_help = "SIGKILL, as a crash (Postgres: pg_ctl -m immediate); default: a polite stop"
    stop = commands.add_parser("stop", help="stop one component, keeping its data and port (S3/moto loses its objects)")
    stop.add_argument("component", choices=COMPONENT_NAMES)
    stop.add_argument("--kill", action="store_true", help=kill_help)
    stop.set_defaults(func=_run(_stop))
    start = commands.add_parser("start", help="start one stopped component again and wait until healthy "
                                "(after postgres or kafka, connect is restarted too)")
    start.add_argument("component", choices=COMPONENT_NAMES)
    start.set_defaults(func=_run(_start))
    restart = commands.add_parser("restart", help="stop, then start one component")
    restart.add_argument("component", choices=COMPONENT_NAMES)
    restart.add_argument("--kill", action="store_true", help=kill_help)
    restart.set_defaults(func=_run(_restart))
    install = commands.add_parser("install", help="fetch the Kafka/Connect/Debezium jars with Maven")
    install.add_argument("--force", action="store_true", help="reinstall even when the jars are current")
    install.set_defaults(func=_run(_install))
    return stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.stack")
    add_stack_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)
