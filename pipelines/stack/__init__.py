"""The local stack of real components: Postgres (OLTP source), Kafka (KRaft), Kafka Connect + Debezium, S3 (moto).

    from pipelines.stack import Stack
    stack = Stack(settings)
    stack.up()        # idempotent: starts what is not running and healthy, waits until all are healthy
    stack.status()    # {"postgres": {"port", "pid", "running", "healthy", "detail"}, ...}
    stack.down()      # stops the processes it started (by pid); purge=True also deletes <data_dir>/stack
    stack.stop("kafka", kill=True)   # one component down (politely, or as a crash), its data and port kept
    stack.start("kafka")             # back on the same port; Connect reconnects (see start)
    stack.restart("postgres")
    stack.install()   # Maven jars into <PROJECT_DIR>/data/jars/{broker,connect} (skipped when current)

Ports are chosen free at first start (and reused while free); state.json under `<data_dir>/stack` tells
pipelines.settings where everything listens. Logs: `<data_dir>/stack/logs/<component>.log`.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from pipelines.settings import PROJECT_DIR, Settings, load_settings
from pipelines.stack import install as _install
from pipelines.stack.connect import CONNECTOR, Connect, cdc_topics
from pipelines.stack.kafka import Kafka
from pipelines.stack.postgres import DATABASE, Postgres
from pipelines.stack.processes import StackError, kill_pid, pid_alive, pid_owned
from pipelines.stack.s3 import S3
from pipelines.stack.state import StateFile

__all__ = ["Stack", "StackError", "SCHEMA_FILE", "JARS_DIR"]

SCHEMA_FILE = PROJECT_DIR / "pipelines" / "workload" / "schema.sql"
JARS_DIR = PROJECT_DIR / "data" / "jars"

COMPONENTS = ("postgres", "kafka", "s3", "connect")  # start order; stop order is the reverse

TIMEOUTS = {"postgres": 60.0, "kafka": 120.0, "s3": 60.0, "connect": 180.0}
# Connect holds connections to these: after one restarts, Connect is restarted too (a polite stop flushes
# its source offsets; Debezium then resumes from them and from its replication slot)
CONNECT_UPSTREAM = frozenset({"postgres", "kafka"})


class Stack:
    def __init__(self, settings: Settings | None = None, schema_file: Path | None = None, jars_dir: Path | None = None):
        self.settings = settings or load_settings()
        self.dir = self.settings.stack_dir
        self.jars = jars_dir or JARS_DIR
        self.state = StateFile(self.dir)
        self.postgres = Postgres(self.dir, schema_file or SCHEMA_FILE)
        self.kafka = Kafka(self.dir, self.jars / "broker")
        self.connect = Connect(self.dir, self.jars / "connect")
        self.s3 = S3(self.dir)
        self.bucket = self.settings.s3_bucket
        self.timings: dict[str, float] = {}

    # -- install -------------------------------------------------------------------------------
    def install(self, force: bool = False) -> list[str]:
        """Maven jars for the broker and Connect; returns the folders (re)installed."""
        return _install.install(self.jars, force=force)

    # -- up ------------------------------------------------------------------------------------
    def up(self, only: Sequence[str] = COMPONENTS) -> dict:
        """Start every component (or those in `only`, e.g. Kafka alone for a benchmark) that is not
        running and healthy; return the state written to state.json."""
        unknown = set(only) - set(COMPONENTS)
        if unknown:
            raise StackError(f"unknown stack component(s) {sorted(unknown)}; the components are {list(COMPONENTS)}")
        if "postgres" in only:
            self.postgres.check_prerequisites()
        if {"kafka", "connect"} & set(only):
            _install.require_java()
            self.install()
        with self.state.lock():
            state = self.state.read()
            restarted: set[str] = set()
            for name in (c for c in COMPONENTS if c in only):
                started = time.monotonic()
                entry = state.get(name)
                upstream_restarted = name == "connect" and bool(restarted & CONNECT_UPSTREAM)
                if entry and not upstream_restarted and self._healthy(name, entry):
                    continue
                if entry:
                    self._stop(name, entry)
                    self.state.drop(name)
                try:
                    state[name] = getattr(self, f"_start_{name}")(state)
                except StackError as exc:
                    raise StackError(f"{exc}\n(what did start keeps running: `lakehouse stack down` stops it)") from exc
                restarted.add(name)
                self.timings[name] = time.monotonic() - started
            return self.state.read()

    def _start_postgres(self, state: dict) -> dict:
        port = self.state.port("postgres")
        self.postgres.init()
        pid = self.postgres.pid()
        if pid is not None:  # left running without a state file (e.g. state.json deleted): restart on our port
            self.postgres.stop()
        pid = self.postgres.start(port, TIMEOUTS["postgres"])
        entry = {"port": port, "database": DATABASE, "pid": pid}
        self.state.set("postgres", entry)
        self.postgres.ensure_database(port)
        self.postgres.ensure_schema(port)
        return entry

    def _start_kafka(self, state: dict) -> dict:
        port, controller_port = self.state.port("kafka"), self.state.port("kafka_controller")
        pid = self.kafka.start(port, controller_port, TIMEOUTS["kafka"])
        entry = {"port": port, "controller_port": controller_port, "pid": pid}
        self.state.set("kafka", entry)
        self.kafka.wait_healthy(port, pid, TIMEOUTS["kafka"])
        return entry

    def _start_s3(self, state: dict) -> dict:
        port = self.state.port("s3")
        pid = self.s3.start(port)
        entry = {"port": port, "bucket": self.bucket, "pid": pid}
        self.state.set("s3", entry)
        self.s3.wait_healthy(port, pid, TIMEOUTS["s3"])
        self.s3.ensure_bucket(port, self.bucket)
        return entry

    def _start_connect(self, state: dict) -> dict:
        pg_port, kafka_port = state["postgres"]["port"], state["kafka"]["port"]
        # the tables must exist before Debezium builds its filtered publication, and the topics before
        # consumers ask for them (an empty table gets no topic from the snapshot)
        self.postgres.ensure_schema(pg_port)
        self.kafka.ensure_topics(kafka_port, cdc_topics())
        rest_port = self.state.port("connect_rest")
        pid = self.connect.start(kafka_port, rest_port, pg_port)
        entry = {"rest_port": rest_port, "connector": CONNECTOR, "pid": pid}
        self.state.set("connect", entry)
        self.connect.wait_healthy(rest_port, pid, TIMEOUTS["connect"])
        return entry

    # -- health --------------------------------------------------------------------------------
    def _running(self, entry: dict) -> bool:
        return pid_owned(entry.get("pid"), self.dir)

    def _health(self, name: str, entry: dict) -> tuple[bool, str]:
        if not self._running(entry):
            return False, "not running"
        if name == "postgres":
            ok = self.postgres.healthy(entry["port"])
            return ok, "accepting connections" if ok else "not accepting connections"
        if name == "kafka":
            ok = self.kafka.healthy(entry["port"])
            return ok, "broker answers metadata" if ok else "broker not answering"
        if name == "s3":
            ok = self.s3.healthy(entry["port"], entry.get("bucket"))
            return ok, f"bucket {entry.get('bucket')} exists" if ok else "bucket missing or server down"
        if name == "connect":
            return self.connect.health(entry["rest_port"])
        raise ValueError(name)

    def _healthy(self, name: str, entry: dict) -> bool:
        return self._health(name, entry)[0]

    def status(self) -> dict:
        """Per component: port, pid, running, healthy and a short detail; components not started are absent."""
        state = self.state.read()
        report = {}
        for name in COMPONENTS:
            entry = state.get(name)
            if not entry:
                continue
            healthy, detail = self._health(name, entry)
            report[name] = {**entry, "running": self._running(entry), "healthy": healthy, "detail": detail}
        return report

    # -- one component: stop, start, restart (fault tests, benches, operators) ---------------------
    def _check_component(self, name: str, state: dict) -> dict:
        if name not in COMPONENTS:
            raise StackError(f"unknown stack component {name!r}; the components are {list(COMPONENTS)}")
        entry = state.get(name)
        if not entry:
            raise StackError(f"{name} was never started in {self.dir}: run `lakehouse stack up` first")
        return entry

    def stop(self, name: str, kill: bool = False) -> None:
        """Stop one component and keep its data, its port and its entry in state.json (status then says
        "not running", and settings still point at where it listens, as clients of a crashed server
        would). kill=True is a crash: SIGKILL, or for Postgres `pg_ctl -m immediate` (every server
        process aborted, no checkpoint, crash recovery at the next start; a SIGKILLed postmaster would
        leave its backends holding the shared memory). Politely: SIGTERM / `pg_ctl -m fast`.
        Moto keeps its objects in memory only: a stopped S3 loses them (the bucket is back on start)."""
        with self.state.lock():
            entry = self._check_component(name, self.state.read())
            if kill:
                self._kill(name, entry)
            else:
                self._stop(name, entry)
            if pid_alive(entry.get("pid")) and pid_owned(entry.get("pid"), self.dir):
                raise StackError(f"{name}: process {entry['pid']} still running after stop")

    def start(self, name: str) -> dict:
        """Start one component stopped by `stop` (or crashed) on its port, and wait until it is healthy;
        a healthy one is left alone. After Postgres or Kafka, Connect is restarted if it runs, so that
        Debezium reconnects at once rather than after its own retries (or never, once its task
        failed). Returns the state written to state.json."""
        with self.state.lock():
            state = self.state.read()
            entry = self._check_component(name, state)
            if self._healthy(name, entry):
                return state
            if name == "postgres":
                self.postgres.check_prerequisites()  # finds pg_ctl (a Stack made after `up` has not)
            self._stop(name, entry)  # whatever is left of it (a hung process, a postmaster.pid)
            started = time.monotonic()
            state[name] = getattr(self, f"_start_{name}")(state)
            self.timings[name] = time.monotonic() - started
            if name in CONNECT_UPSTREAM and "connect" in state:
                started = time.monotonic()
                self._stop("connect", state["connect"])
                state["connect"] = self._start_connect(state)
                self.timings["connect"] = time.monotonic() - started
            return self.state.read()

    def restart(self, name: str, kill: bool = False) -> dict:
        """`stop` then `start`: a component bounced (kill=True: crashed) while the rest keeps running."""
        self.stop(name, kill=kill)
        return self.start(name)

    # -- down ----------------------------------------------------------------------------------
    def _stop(self, name: str, entry: dict) -> None:
        if name == "postgres":
            self.postgres.stop()
            return
        pid = entry.get("pid")
        if pid_owned(pid, self.dir):
            {"kafka": self.kafka, "connect": self.connect, "s3": self.s3}[name].stop(pid)

    def _kill(self, name: str, entry: dict) -> None:
        if name == "postgres":
            self.postgres.stop(mode="immediate")
            return
        pid = entry.get("pid")
        if pid_owned(pid, self.dir):
            kill_pid(pid)

    def down(self, purge: bool = False) -> list[int]:
        """Stop every component this data dir started; return the pids stopped. purge: delete `<data_dir>/stack`."""
        with self.state.lock():
            state = self.state.read()
            stopped = []
            for name in reversed(COMPONENTS):
                entry = state.get(name)
                if entry:
                    self._stop(name, entry)
                    if pid_alive(entry.get("pid")) and pid_owned(entry.get("pid"), self.dir):
                        raise StackError(f"{name}: process {entry['pid']} still running after stop")
                    stopped.append(entry.get("pid"))
                    self.state.drop(name)
                elif name == "postgres":
                    self.postgres.stop()  # a cluster left running without a state file
            self.state.remove()
            if purge and self.dir.exists():
                shutil.rmtree(self.dir)
        return stopped
